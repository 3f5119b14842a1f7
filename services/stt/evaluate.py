"""`milo eval stt`: run a manifest through a running STT service and score it.

Manifest: JSON Lines, one utterance per line:

    {"audio": "clips/0001.wav", "text": "Manao ahoana ianao?"}

`audio` (or `audio_filepath`, NeMo style) is a file path, relative to the manifest's
folder unless absolute, in any format the service decodes; `text` (or `reference`) is the
reference transcript. Both sides are normalized (services/stt/normalize.py) before
scoring. WER and CER are corpus-level (total errors / total reference words or
characters, the jiwer package), not a mean of per-utterance rates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.stt.normalize import normalize

NORMALIZATION = (
    "NFKC, case-folded, apostrophes and punctuation -> spaces, diacritics kept "
    "(services/stt/normalize.py)"
)


class ManifestError(ValueError):
    """The manifest cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    """One manifest entry: the clip's path, its reference text, and its line in the manifest."""

    audio: Path
    reference: str
    line: int


@dataclass(frozen=True)
class Scored:
    """One utterance's reference, hypothesis, WER and CER (fractions, after normalization)."""

    audio: str
    reference: str
    hypothesis: str
    wer: float
    cer: float
    reference_words: int


@dataclass(frozen=True)
class Report:
    """Corpus scores: WER and CER as fractions (errors over reference words or characters), the
    edit counts, audio and server processing time (seconds), and the worst utterances."""

    utterances: int
    wer: float
    cer: float
    reference_words: int
    reference_chars: int
    substitutions: int
    deletions: int
    insertions: int
    audio_seconds: float
    processing_seconds: float
    worst: list[Scored]


def read_manifest(path: Path) -> list[Item]:
    """The items of a JSONL manifest (`{"audio": PATH, "text": REF}` a line; a relative path is
    relative to the manifest). Raises ManifestError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    items = [_item(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise ManifestError(f"manifest {path} holds no utterances")
    return items


def _item(path: Path, number: int, line: str) -> Item:
    where = f"{path}:{number}"
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise ManifestError(f"{where}: not a JSON object ({exc})") from exc
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: not a JSON object")
    audio, text = (
        entry.get("audio", entry.get("audio_filepath")),
        entry.get("text", entry.get("reference")),
    )
    if not isinstance(audio, str) or not isinstance(text, str):
        raise ManifestError(f'{where}: needs "audio" (a path) and "text" (the reference)')
    if not normalize(text):
        raise ManifestError(f"{where}: the reference text is empty once normalized")
    file = Path(audio) if Path(audio).is_absolute() else path.parent / audio
    if not file.is_file():
        raise ManifestError(f"{where}: audio file {file} not found")
    return Item(file, text, number)


def score(
    items: Sequence[Item],
    hypotheses: Sequence[str],
    audio_seconds: float = 0.0,
    processing_seconds: float = 0.0,
    worst: int = 10,
) -> Report:
    """Corpus WER/CER of `hypotheses` against the items' references, both normalized."""
    import jiwer

    refs = [normalize(i.reference) for i in items]
    hyps = [normalize(h) for h in hypotheses]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    scored = [
        Scored(str(i.audio), i.reference, h, jiwer.wer(r, n), jiwer.cer(r, n), len(r.split()))
        for i, h, r, n in zip(items, hypotheses, refs, hyps, strict=True)
    ]
    scored.sort(key=lambda s: (s.wer, s.cer), reverse=True)
    return Report(
        utterances=len(items),
        wer=float(words.wer),
        cer=float(chars.cer),
        reference_words=sum(len(r.split()) for r in refs),
        reference_chars=sum(len(r) for r in refs),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        audio_seconds=audio_seconds,
        processing_seconds=processing_seconds,
        worst=[s for s in scored[:worst] if s.wer > 0 or s.cer > 0],
    )


def report_json(report: Report, model: dict[str, Any]) -> dict[str, Any]:
    """The report as a JSON-ready dict, with the model and the normalization rules."""
    return {**asdict(report), "model": model, "normalization": NORMALIZATION}


def format_report(report: Report, model: dict[str, Any]) -> str:
    """The report as text: WER, CER, real-time factor, then the worst utterances."""
    r = report
    rtf = r.processing_seconds / r.audio_seconds if r.audio_seconds else 0.0
    lines = [
        f"milo eval stt: {r.utterances} utterances, {r.audio_seconds:.1f} s of audio, "
        f"model {model.get('model_id', '?')} (language {model.get('language', '?')})",
        f"WER {100 * r.wer:6.2f}%  (S {r.substitutions}, D {r.deletions}, I {r.insertions} "
        f"over {r.reference_words} reference words)",
        f"CER {100 * r.cer:6.2f}%  (over {r.reference_chars} reference characters)",
        f"real-time factor {rtf:.3f} ({r.processing_seconds:.2f} s of server processing)",
        f"normalization: {NORMALIZATION}",
    ]
    if r.worst:
        lines.append(f"worst {len(r.worst)} utterances:")
    for s in r.worst:
        lines += [
            f"  WER {100 * s.wer:6.2f}%  CER {100 * s.cer:6.2f}%  {s.audio}",
            f"    ref: {s.reference}",
            f"    hyp: {s.hypothesis}",
        ]
    return "\n".join(lines)
