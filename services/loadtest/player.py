"""How a player would play a reply's audio as it arrives: glitches (buffer underruns).

The player starts once the first chunk has arrived and `buffer_ms` more have passed (a
jitter buffer), then plays continuously. A chunk that arrives after the audio before it has
finished playing is an underrun: the listener hears a gap (a glitch) until it arrives,
then playback resumes from there. Pure logic: arrival times are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Playback:
    """The outcome of playing one reply."""

    audio_s: float  # audio received
    underruns: int  # times the player ran dry before the reply's audio was over
    stalled_s: float  # total silence heard in the middle of the reply

    @property
    def glitched(self) -> bool:
        """True when playback ran dry at least once."""
        return self.underruns > 0


def play(
    chunks: Iterable[tuple[float, float]], buffer_ms: float = 0.0, tolerance_ms: float = 1.0
) -> Playback:
    """Play chunks given as (arrival time in seconds, duration in seconds), in order.

    A gap shorter than `tolerance_ms` is not counted (timer resolution)."""
    clock: float | None = None  # when the audio received so far will have finished playing
    audio = stalled = 0.0
    underruns = 0
    for arrival, duration in chunks:
        if clock is None:
            clock = arrival + buffer_ms / 1000
        elif arrival > clock + tolerance_ms / 1000:
            underruns += 1
            stalled += arrival - clock
            clock = arrival
        clock += duration
        audio += duration
    return Playback(audio, underruns, stalled)
