"""The speech engine as the service sees it: text in, mono float samples out.

`VitsEngine` (services.tts.vits_engine) is the real one; tier-2 tests pass a fake. An engine
receives text already normalized and filtered to `vocab`, one segment at a time, and must
give the same samples for the same (text, voice, speed, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.runtime.model_service import Engine
from services.tts.audio import Samples


@dataclass(frozen=True)
class Segment:
    """One piece of text to speak (normalized, filtered to the engine's vocab)."""

    text: str
    voice: str
    speed: float
    seed: int


class SpeechEngine(Engine, Protocol):
    """One model (`load` loads and warms it up, `close`: see `Engine`)."""

    @property
    def sample_rate(self) -> int:
        """Samples per second the model produces."""
        ...

    @property
    def voices(self) -> Sequence[str]:
        """Voice names; the first is the default."""
        ...

    @property
    def vocab(self) -> frozenset[str]:
        """The characters the model can read."""
        ...

    def synthesize(self, text: str, voice: str, speed: float, seed: int) -> Samples:
        """Float32 samples in [-1, 1] at `sample_rate` (blocking; thread-safe)."""
        ...

    # Optional: `synthesize_batch(segments: Sequence[Segment]) -> list[Samples]`, the same
    # samples as `synthesize` of each, in one model call; the batcher uses it when present.
