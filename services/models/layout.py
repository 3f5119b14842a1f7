"""Where Milo's models live on disk: one folder that every service and docker-compose share.

```
<models_dir>/
  stt/           faster-whisper CTranslate2 folder
                 (model.bin, config.json, tokenizer.json, vocabulary.*, preprocessor_config.json)
  translate/     CTranslate2 NLLB folder
                 (model.bin, config.json, shared_vocabulary.*, sentencepiece.bpe.model)
  llm/model.gguf llama.cpp GGUF file
  tts/           transformers VITS folder
                 (config.json, model.safetensors, vocab.json, tokenizer_config.json, ...)
  manifest.json  {"stt": {"id": ..., "source": ..., "demo": true/false, "created": ...}, ...}
```

The default models dir is `./models`; the environment variable `MILO_MODELS_DIR` overrides
it. The offline demo set (small models with the real architectures, see
`services.models.demo`) has the same layout and defaults to `./models/demo`
(`MILO_DEMO_MODELS` overrides it); point `MILO_MODELS_DIR` at it to run Milo on it. Those
defaults and the manifest reader are the runtime's (`services/runtime/model_folder.py`),
which the services read with.

Hidden files (`.manifest.lock`, `.demo.lock`, `.<entry>.staging-*` while an entry is being
written, `llm/.download/` during a resumable GGUF download) belong to the tooling: every
entry is written aside and swapped in by renames, so a service never loads half a model.

A service needs only its own entry (`Layout(root).stt`, ...), so its container can mount
just that folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from services.models._util import locked
from services.runtime.model_folder import MANIFEST_FILE, read_manifest
from services.runtime.model_folder import demo_models_dir as default_demo_dir
from services.runtime.model_folder import models_root as default_models_dir

__all__ = [
    "COMPONENTS",
    "LLM_FILE",
    "MANIFEST_FILE",
    "REQUIRED_FILES",
    "SPM_FILE",
    "Component",
    "Layout",
    "default_demo_dir",
    "default_models_dir",
    "read_manifest",
    "record_entry",
    "utc_now",
    "write_manifest",
]

Component = Literal["stt", "translate", "llm", "tts"]
COMPONENTS: Final[tuple[Component, ...]] = ("stt", "translate", "llm", "tts")

LLM_FILE: Final = "model.gguf"
SPM_FILE: Final = "sentencepiece.bpe.model"

# Files each entry must contain to be usable by its engine.
REQUIRED_FILES: Final[dict[Component, tuple[str, ...]]] = {
    "stt": ("model.bin", "config.json", "tokenizer.json"),
    "translate": ("model.bin", "config.json", SPM_FILE),
    "llm": (LLM_FILE,),
    "tts": ("config.json", "model.safetensors", "vocab.json", "tokenizer_config.json"),
}


@dataclass(frozen=True)
class Layout:
    """Paths of the entries under one models dir."""

    root: Path

    @property
    def stt(self) -> Path:
        """The speech-to-text entry's folder (CTranslate2 Whisper)."""
        return self.root / "stt"

    @property
    def translate(self) -> Path:
        """The translation entry's folder (CTranslate2 NLLB)."""
        return self.root / "translate"

    @property
    def llm_dir(self) -> Path:
        """The folder holding the LLM's GGUF file."""
        return self.root / "llm"

    @property
    def llm(self) -> Path:
        """The GGUF file itself (llama.cpp takes a file, not a folder)."""
        return self.llm_dir / LLM_FILE

    @property
    def tts(self) -> Path:
        """The text-to-speech entry's folder (transformers VITS)."""
        return self.root / "tts"

    @property
    def manifest(self) -> Path:
        """The manifest file recording what was installed, from where, and when."""
        return self.root / MANIFEST_FILE

    def entry_dir(self, component: Component) -> Path:
        """The folder an entry owns (for `llm`, the folder holding model.gguf)."""
        return self.llm_dir if component == "llm" else self.root / component

    def missing_files(self, component: Component) -> list[str]:
        """Required files of `component` that are absent (empty list: complete)."""
        folder = self.entry_dir(component)
        return [name for name in REQUIRED_FILES[component] if not (folder / name).is_file()]


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (a reader never sees half a file)."""
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, Layout(root).manifest)


def record_entry(root: Path, component: Component, entry: dict[str, Any]) -> dict[str, Any]:
    """Set `component`'s manifest entry (adding `created`) and return the whole manifest."""
    with locked(root / ".manifest.lock"):
        manifest = read_manifest(root)
        manifest[component] = {"created": utc_now(), **entry}
        write_manifest(root, manifest)
    return manifest


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. "2026-01-31T12:00:00+00:00"."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()
