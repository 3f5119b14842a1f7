"""The speech engine as the service sees it: text in, mono float samples out.

`VitsEngine` (services.tts.vits) is the real one; tier-2 tests pass a fake. An engine
receives text already normalized and filtered to `vocab`, one segment at a time, and must
give the same samples for the same (text, voice, speed, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.tts.audio import Samples


class SpeechEngine(Protocol):
    model_id: str
    device: str

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

    def load(self) -> None:
        """Load and warm up (blocking)."""
        ...

    def synthesize(self, text: str, voice: str, speed: float, seed: int) -> Samples:
        """Float32 samples in [-1, 1] at `sample_rate` (blocking; thread-safe)."""
        ...

    def close(self) -> None: ...
