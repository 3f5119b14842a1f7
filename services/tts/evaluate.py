"""`milo eval tts`: how intelligible a voice is, measured by a round trip.

Each Malagasy sentence is synthesized by the TTS service, the audio is transcribed by the STT
service in Malagasy, and the transcript is scored against the sentence as the voice was asked
to read it: after the TTS normalization (numbers, dates, money spoken as words,
services/tts/normalize.py), then the STT scoring normalization (services/stt/evaluate.py).
WER and CER are corpus-level (jiwer), with per-sentence figures. This compares a new
fine-tuned voice with the base one before it replaces it: same sentences, same STT model.

Sentence files: text (one sentence a line, `#` comments) or JSON Lines (`{"text": ...}`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from services.stt.evaluate import Item, ManifestError, Report, score
from services.tts.normalize import normalize


def read_sentences(path: Path) -> list[str]:
    """Sentences of a .txt or .jsonl file; ManifestError naming the line when unusable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    sentences = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if path.suffix.lower() == ".jsonl":
            try:
                entry = json.loads(text)
            except ValueError as exc:
                raise ManifestError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise ManifestError(f'{path}:{number}: needs {{"text": ...}}')
            text = entry["text"].strip()
        sentences.append(text)
    if not sentences:
        raise ManifestError(f"{path} holds no sentences")
    return sentences


def spoken_reference(sentence: str) -> str:
    """The sentence as the voice reads it: numbers, dates and money as Malagasy words."""
    return normalize(sentence)


def score_round_trip(
    sentences: Sequence[str],
    transcripts: Sequence[str],
    audio_seconds: float = 0.0,
    processing_seconds: float = 0.0,
    worst: int = 10,
) -> Report:
    """Corpus and per-sentence WER/CER of STT `transcripts` of the synthesized `sentences`."""
    items = [
        Item(Path(f"sentence {i}"), spoken_reference(s), i) for i, s in enumerate(sentences, 1)
    ]
    return score(items, transcripts, audio_seconds, processing_seconds, worst)
