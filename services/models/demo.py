"""Build the offline demo model set: small models with the real architectures and engines.

    stt        faster-whisper tiny.en (real, English only)      demo_stt.py
               or, with stt="base", the multilingual whisper-base (real, has Malagasy)
    translate  random NLLB-architecture model in CTranslate2    demo_translate.py
    llm        random llama GGUF                                demo_llm.py
    tts        random VITS saved by transformers                demo_tts.py

`build_demo(dest)` is idempotent: every manifest entry records DEMO_VERSION, and an entry
is rebuilt only when it is missing, incomplete, or from another version (bump DEMO_VERSION
whenever a builder changes what it writes). Builds are deterministic (fixed seeds), take a
few seconds on 2 CPU cores, and each entry is swapped in atomically.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from services.models._util import (
    ModelsError,
    folder_size,
    locked,
    quiet_progress_bars,
    staging_dir,
)
from services.models.demo_llm import build_llm
from services.models.demo_stt import build_stt, build_stt_multilingual
from services.models.demo_translate import build_translate
from services.models.demo_tts import build_tts
from services.models.layout import COMPONENTS, Component, Layout, read_manifest, record_entry

logger = logging.getLogger(__name__)

DEMO_VERSION = 3

Echo = Callable[[str], None]
BUILDERS: dict[Component, Callable[[Path], dict[str, Any]]] = {
    "stt": build_stt,
    "translate": build_translate,
    "llm": build_llm,
    "tts": build_tts,
}
STT_VARIANTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "tiny.en": build_stt,
    "base": build_stt_multilingual,
}
_print: Echo = functools.partial(print, flush=True)


class NotADemoSetError(ModelsError):
    """The target folder holds real (non-demo) models that a demo build would overwrite."""


def build_demo(
    dest: Path,
    force: bool = False,
    *,
    components: Iterable[Component] = COMPONENTS,
    echo: Echo = _print,
    stt: str = "tiny.en",
) -> dict[str, Any]:
    """Build (or bring up to date) the demo models under `dest`; returns the manifest.

    stt: "tiny.en" (English only, fast) or "base" (multilingual whisper-base, with Malagasy).
    """
    if stt not in STT_VARIANTS:
        raise ModelsError(f"unknown demo STT {stt!r}: choose one of {', '.join(STT_VARIANTS)}")
    layout = Layout(Path(dest))
    with locked(layout.root / ".demo.lock"):
        return _build(layout, list(components), force, echo, stt)


def _build(
    layout: Layout, wanted: list[Component], force: bool, echo: Echo, stt: str = "tiny.en"
) -> dict[str, Any]:
    manifest = read_manifest(layout.root)
    _refuse_real_models(manifest, wanted, force)
    stale = [
        c
        for c in wanted
        if force
        or not is_current(layout, manifest, c)
        or (c == "stt" and manifest["stt"].get("variant", "tiny.en") != stt)
    ]
    if not stale:
        echo(f"demo models in {layout.root} are up to date (version {DEMO_VERSION})")
        return manifest
    started = time.monotonic()
    for component in stale:
        manifest = _build_one(layout, component, echo, stt)
    echo(
        f"demo models ready in {layout.root} ({time.monotonic() - started:.1f}s, "
        f"{folder_size(layout.root) / 1e6:.1f} MB)"
    )
    return manifest


def is_current(layout: Layout, manifest: dict[str, Any], component: Component) -> bool:
    """True when `component` was built by this DEMO_VERSION and its files are all there."""
    entry = manifest.get(component)
    return (
        isinstance(entry, dict)
        and entry.get("demo") is True
        and entry.get("version") == DEMO_VERSION
        and not layout.missing_files(component)
    )


def _refuse_real_models(manifest: dict[str, Any], wanted: list[Component], force: bool) -> None:
    real = [c for c in wanted if isinstance(manifest.get(c), dict) and not manifest[c].get("demo")]
    if real and not force:
        raise NotADemoSetError(
            f"the folder holds real models ({', '.join(real)}); "
            "use another --dir for the demo set, or --force to overwrite them"
        )


def _build_one(
    layout: Layout, component: Component, echo: Echo, stt: str = "tiny.en"
) -> dict[str, Any]:
    echo(f"building demo {component} ...")
    started = time.monotonic()
    builder = STT_VARIANTS[stt] if component == "stt" else BUILDERS[component]
    with quiet_progress_bars(), staging_dir(layout.entry_dir(component)) as staging:
        entry = builder(staging)
    manifest = record_entry(
        layout.root, component, {**entry, "demo": True, "version": DEMO_VERSION}
    )
    size = folder_size(layout.entry_dir(component)) / 1e6
    echo(f"  {component}: {entry['id']} ({size:.1f} MB, {time.monotonic() - started:.1f}s)")
    logger.debug("demo %s entry: %s", component, manifest[component])
    return manifest
