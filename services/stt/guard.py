"""The hallucination guard: Whisper invents text on silence and noise ("Thank you.", "You")
and loops on hard audio. What reaches the user passes three checks:

1. Only audio the VAD calls speech is decoded at all (Recognize skips the model when the
   VAD hears nothing; streaming decodes only endpointed utterances).
2. A segment is dropped when the model itself says "no speech" (no_speech_prob above
   `no_speech_threshold`) and is unsure of its text (avg_logprob below `log_prob_threshold`),
   Whisper's own rule; or when it is a loop (compression ratio above the threshold).
3. In a whole clip, a segment lying entirely outside the VAD's speech spans is dropped when
   no_speech_prob is above `no_speech_threshold` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from services.stt.engine import Segment, Transcript


@dataclass(frozen=True)
class GuardParams:
    """The thresholds of the guard (module docstring); the defaults are openai-whisper's
    `transcribe` defaults, which faster-whisper keeps."""

    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


def is_hallucination(segment: Segment, params: GuardParams, outside_speech: bool = False) -> bool:
    """Whether to drop `segment`: no text, a loop, or "no speech" with an unsure text (or lying
    outside the VAD's speech, `outside_speech`)."""
    if not segment.text.strip():
        return True
    if segment.compression_ratio > params.compression_ratio_threshold:
        return True
    unsure = segment.avg_logprob < params.log_prob_threshold
    return segment.no_speech_prob > params.no_speech_threshold and (unsure or outside_speech)


def overlaps(start: float, end: float, spans: Sequence[tuple[float, float]]) -> bool:
    """Whether [start, end] (seconds) meets any of the spans (seconds)."""
    return any(start < s_end and s_start < end for s_start, s_end in spans)


def apply_guard(
    transcript: Transcript, params: GuardParams, speech: Sequence[tuple[float, float]] | None = None
) -> Transcript:
    """The transcript without hallucinated segments. `speech`: the VAD's spans in seconds,
    when the transcript covers a whole clip (None: all the audio was speech)."""
    kept = tuple(
        s
        for s in transcript.segments
        if not is_hallucination(
            s, params, speech is not None and not overlaps(s.start, s.end, speech)
        )
    )
    dropped = len(transcript.segments) - len(kept)
    return replace(transcript, segments=kept, dropped=transcript.dropped + dropped)
