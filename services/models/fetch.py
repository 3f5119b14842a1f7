"""Prepare the real models into the models layout (`milo models fetch` / `milo models convert`).

A source is a local path when one exists, else a Hugging Face repository id. Downloads go
through huggingface_hub (snapshot_download / hf_hub_download), so `HF_ENDPOINT` (a mirror,
or the fake hub of the tests) and `HF_TOKEN` are honoured; `HF_ENDPOINT` is read at call
time. Downloaded repositories stay in the Hugging Face cache, so converting again with
another quantization does not download again; the GGUF file is downloaded next to its
destination and moved into place instead, to avoid holding 4 GB twice.

    translate  facebook/nllb-200-distilled-600M -> CTranslate2 (int8_float16)
    stt        local Whisper checkpoint or openai/whisper-medium -> CTranslate2 (float16);
               files a trainer checkpoint lacks (tokenizer, preprocessor) come from the base
    llm        bartowski/Mistral-7B-Instruct-v0.3-GGUF, Mistral-7B-Instruct-v0.3-Q4_K_M.gguf
    tts        facebook/mms-tts-mlg or a local fine-tuned VITS folder
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.models import convert
from services.models._util import ModelsError, optional, require
from services.models.layout import Component, Layout, read_manifest, record_entry
from services.models.licences import licence_of

logger = logging.getLogger(__name__)

NLLB_REPO = "facebook/nllb-200-distilled-600M"
WHISPER_REPO = "openai/whisper-medium"
LLM_REPO = "bartowski/Mistral-7B-Instruct-v0.3-GGUF"
LLM_FILENAME = "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
MMS_REPO = "facebook/mms-tts-mlg"

Echo = Callable[[str], None]
_print: Echo = functools.partial(print, flush=True)
# Files of a trainer checkpoint that no engine needs.
_SKIPPED = {"trainer_state.json", "training_args.json", "training_args.bin"}
_SUPPORT_SUFFIXES = (".json", ".model", ".txt", ".tiktoken")


class FetchError(ModelsError):
    """A model could not be downloaded (hub unreachable, repository or file not found)."""


@dataclass(frozen=True)
class Hub:
    """Where and how to download; None means huggingface_hub's default."""

    endpoint: str | None = None
    cache_dir: Path | None = None
    revision: str | None = None

    def resolved_endpoint(self) -> str | None:
        """The hub address: `endpoint`, else $HF_ENDPOINT, else None (huggingface_hub's default)."""
        return self.endpoint or os.environ.get("HF_ENDPOINT") or None


def select_repo_files(files: Sequence[str]) -> list[str]:
    """Top-level config/tokenizer files plus one weight format (safetensors preferred)."""
    top = [f for f in files if "/" not in f and f not in _SKIPPED]
    support = [f for f in top if f.endswith(_SUPPORT_SUFFIXES)]
    safetensors = [f for f in top if f.endswith(".safetensors")]
    bins = [f for f in top if f.startswith("pytorch_model") and f.endswith(".bin")]
    return sorted(support + (safetensors or bins))


def download_repo(repo: str, hub: Hub, keep: Callable[[Sequence[str]], list[str]]) -> Path:
    """Download the files of `repo` that `keep` selects; returns the snapshot folder."""
    hf = require("huggingface_hub")
    endpoint = hub.resolved_endpoint()
    try:
        files = hf.HfApi(endpoint=endpoint).list_repo_files(repo, revision=hub.revision)
        wanted = keep(files)
        if not wanted:
            raise FetchError(f"{repo} has none of the files needed")
        folder = hf.snapshot_download(
            repo,
            revision=hub.revision,
            allow_patterns=wanted,
            endpoint=endpoint,
            cache_dir=hub.cache_dir,
        )
    except _hub_errors(hf) as exc:
        raise FetchError(f"cannot download {repo} from {endpoint or 'the hub'}: {exc}") from exc
    return Path(folder)


def _hub_errors(hf: Any) -> tuple[type[BaseException], ...]:
    """Exceptions meaning 'the hub said no or could not be reached', across hub versions."""
    errors: list[type[BaseException]] = [OSError, hf.errors.HfHubHTTPError]
    for name in ("httpx2", "httpx", "requests"):
        module = optional(name)
        base = getattr(module, "HTTPError", None) or getattr(module, "RequestException", None)
        if isinstance(base, type) and issubclass(base, BaseException):
            errors.append(base)
    return tuple(errors)


def resolve(source: str, hub: Hub, keep: Callable[[Sequence[str]], list[str]]) -> tuple[Path, str]:
    """A local folder as it is, else a download; returns (folder, provenance)."""
    local = Path(source).expanduser()
    if local.exists():
        return local, f"local:{local.resolve()}"
    folder = download_repo(source, hub, keep)
    return folder, f"hf:{source}@{folder.name}"


def base_files(
    src: Path, base: str | None, required: Sequence[str], wanted: Sequence[str], hub: Hub
) -> Path | None:
    """A folder with the `wanted` files that `src` lacks, taken from the base model.

    None when `src` has every `required` file. A local `base` folder is used as it is.
    """
    if all((src / name).is_file() for name in required):
        return None
    missing = [name for name in wanted if not (src / name).is_file()]
    if base is None:
        raise FetchError(f"{src} lacks {', '.join(missing)} and no base model was given")
    logger.info("%s lacks %s: taking them from %s", src, ", ".join(missing), base)
    local = Path(base).expanduser()
    if local.is_dir():
        return local
    return download_repo(base, hub, lambda files: [f for f in files if f in missing])


def is_up_to_date(root: Path, component: Component, entry: dict[str, Any]) -> bool:
    """True when the manifest already records this very source, settings and all files."""
    current = read_manifest(root).get(component)
    if (
        not isinstance(current, dict)
        or current.get("demo")
        or Layout(root).missing_files(component)
    ):
        return False
    return all(current.get(key) == value for key, value in entry.items())


def _record(
    root: Path, component: Component, entry: dict[str, Any], provenance: str
) -> dict[str, Any]:
    licence = licence_of(entry, Layout(root).entry_dir(component))
    return record_entry(
        root, component, {**entry, "source": provenance, "demo": False, "license": licence}
    )


def prepare_translate(
    root: Path,
    source: str = NLLB_REPO,
    quantization: str | None = convert.DEFAULT_MT_QUANTIZATION,
    *,
    hub: Hub | None = None,
    force: bool = False,
    echo: Echo = _print,
) -> dict[str, Any]:
    """NLLB (hub id or local folder) -> <root>/translate in CTranslate2 format."""
    entry = {"id": source, "quantization": quantization}
    if not force and is_up_to_date(root, "translate", entry):
        echo(f"translate: {source} is up to date")
        return read_manifest(root)
    echo(f"translate: fetching {source} ...")
    hub = hub or Hub()
    folder, provenance = resolve(source, hub, select_repo_files)
    echo(f"translate: converting to CTranslate2 ({quantization}) ...")
    convert.convert_nllb(folder, Layout(root).translate, quantization)
    return _record(root, "translate", entry, provenance)


def prepare_stt(
    root: Path,
    source: str = WHISPER_REPO,
    quantization: str | None = convert.DEFAULT_STT_QUANTIZATION,
    *,
    base: str | None = WHISPER_REPO,
    hub: Hub | None = None,
    force: bool = False,
    echo: Echo = _print,
) -> dict[str, Any]:
    """Whisper (local checkpoint or hub id) -> <root>/stt for faster-whisper."""
    entry = {"id": source, "quantization": quantization}
    if not force and is_up_to_date(root, "stt", entry):
        echo(f"stt: {source} is up to date")
        return read_manifest(root)
    echo(f"stt: fetching {source} ...")
    hub = hub or Hub()
    folder, provenance = resolve(source, hub, select_repo_files)
    extra = base_files(
        folder, base, convert.WHISPER_REQUIRED_FILES, convert.WHISPER_BASE_FILES, hub
    )
    echo(f"stt: converting to CTranslate2 ({quantization}) ...")
    convert.convert_whisper(folder, Layout(root).stt, quantization, extra_dir=extra)
    return _record(root, "stt", {**entry, "base": base if extra else None}, provenance)


def prepare_tts(
    root: Path,
    source: str = MMS_REPO,
    *,
    base: str | None = MMS_REPO,
    hub: Hub | None = None,
    force: bool = False,
    echo: Echo = _print,
) -> dict[str, Any]:
    """VITS (hub id or local fine-tune) -> <root>/tts."""
    entry = {"id": source}
    if not force and is_up_to_date(root, "tts", entry):
        echo(f"tts: {source} is up to date")
        return read_manifest(root)
    echo(f"tts: fetching {source} ...")
    hub = hub or Hub()
    folder, provenance = resolve(source, hub, select_repo_files)
    extra = base_files(folder, base, convert.VITS_REQUIRED_FILES, convert.VITS_TOKENIZER_FILES, hub)
    convert.install_vits(folder, Layout(root).tts, extra_dir=extra)
    return _record(root, "tts", {**entry, "base": base if extra else None}, provenance)


def prepare_llm(
    root: Path,
    source: str = LLM_REPO,
    filename: str = LLM_FILENAME,
    *,
    hub: Hub | None = None,
    force: bool = False,
    echo: Echo = _print,
) -> dict[str, Any]:
    """A GGUF file (local path, or repository + file name) -> <root>/llm/model.gguf."""
    local = Path(source).expanduser()
    entry = {"id": str(local.resolve()) if local.is_file() else f"{source}/{filename}"}
    if not force and is_up_to_date(root, "llm", entry):
        echo(f"llm: {entry['id']} is up to date")
        return read_manifest(root)
    target = Layout(root).llm
    if local.is_file():
        echo(f"llm: copying {local} ...")
        convert.install_gguf(local, target)
        return _record(root, "llm", entry, f"local:{local.resolve()}")
    echo(f"llm: downloading {filename} from {source} ...")
    download_dir = target.parent / ".download"
    downloaded, commit = _download_file(source, filename, hub or Hub(), download_dir)
    convert.install_gguf(downloaded, target, move=True)
    shutil.rmtree(download_dir, ignore_errors=True)
    return _record(root, "llm", entry, f"hf:{source}@{commit}")


def _download_file(repo: str, filename: str, hub: Hub, local_dir: Path) -> tuple[Path, str]:
    """One file into `local_dir` (resumable there); returns (path, commit)."""
    hf = require("huggingface_hub")
    endpoint = hub.resolved_endpoint()
    try:
        info = hf.HfApi(endpoint=endpoint).model_info(repo, revision=hub.revision or "main")
        path = hf.hf_hub_download(
            repo, filename, revision=info.sha, endpoint=endpoint, local_dir=local_dir
        )
    except _hub_errors(hf) as exc:
        raise FetchError(f"cannot download {repo}/{filename}: {exc}") from exc
    return Path(path), str(info.sha)
