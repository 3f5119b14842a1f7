"""The domain types of speech recognition and the engine protocol the service runs on.

Times are in seconds from the start of the audio handed to the engine, as floats; the
servicer turns them into milliseconds. Tier-2 tests inject a fake engine that satisfies
`SttEngine`; the real one is `whisper_engine.WhisperEngine`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from services.runtime.model_service import Engine

SAMPLE_RATE = 16_000  # what every engine takes: 16 kHz mono float32 in [-1, 1]


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: `language` ISO 639-1 (None: Whisper's language identification), beam size,
    word timings, a prompt; `best_effort` (streaming partials) is greedy, one temperature, no
    word timings."""

    language: str | None  # None: the engine detects it (Whisper's language identification)
    beam_size: int = 5
    word_timestamps: bool = True
    initial_prompt: str | None = None
    # Best effort (streaming partials): greedy, one temperature, no word timings.
    best_effort: bool = False


@dataclass(frozen=True)
class Word:
    """One word, times in seconds from the start of the audio, and the model's probability in [0,
    1]."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    """One Whisper segment, times in seconds, with the model's scores the hallucination guard
    reads: mean token log probability, no-speech probability, and the zlib compression ratio
    of its text (high: the text repeats itself)."""

    text: str
    start: float
    end: float
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    words: tuple[Word, ...] = ()

    def clamped(self, duration: float) -> Segment:
        """Times kept inside [0, duration]: Whisper's timestamps can overshoot the audio."""

        def clamp(t: float) -> float:
            return min(max(t, 0.0), duration)

        words = tuple(
            replace(w, start=clamp(w.start), end=clamp(max(w.end, w.start))) for w in self.words
        )
        return replace(
            self, start=clamp(self.start), end=clamp(max(self.end, self.start)), words=words
        )

    def shifted(self, seconds: float) -> Segment:
        """The same segment with its times moved by `seconds`."""
        words = tuple(replace(w, start=w.start + seconds, end=w.end + seconds) for w in self.words)
        return replace(self, start=self.start + seconds, end=self.end + seconds, words=words)


@dataclass(frozen=True)
class Transcript:
    """The segments of one decode, its language (ISO 639-1), the seconds of audio decoded, and
    how many segments the hallucination guard removed."""

    segments: tuple[Segment, ...]
    language: str
    duration: float  # seconds of audio the engine was given
    dropped: int = 0  # segments removed by the hallucination guard

    @property
    def text(self) -> str:
        """The segments' text, stripped and joined by spaces."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def clamped(self) -> Transcript:
        """The same with every time kept inside [0, duration]."""
        return replace(self, segments=tuple(s.clamped(self.duration) for s in self.segments))

    def shifted(self, seconds: float) -> Transcript:
        """The same with every time moved by `seconds`."""
        return replace(self, segments=tuple(s.shifted(seconds) for s in self.segments))


class SttEngine(Engine, Protocol):
    """One model (`load`, `close`: see `Engine`). `transcribe` blocks; it is called from
    worker threads, at most `num_workers` at once (the scheduler sees to that). The
    attributes below are valid once loaded."""

    compute_type: str
    multilingual: bool
    languages: tuple[str, ...]  # ISO 639-1 codes it accepts

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """The transcript of 16 kHz mono float32 `audio` (blocking)."""

    # Optional: `transcribe_batch(audios, options) -> list[Transcript]`, the same results
    # as `transcribe` of each, in one model call; the core uses it when the engine has it.
