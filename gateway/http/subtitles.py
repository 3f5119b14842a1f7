"""Subtitles from STT segments: SubRip (.srt) and WebVTT (.vtt), as OpenAI's
/v1/audio/transcriptions returns them (one cue per segment, text trimmed)."""

from __future__ import annotations

from collections.abc import Iterable

from milo.stt.v1 import stt_pb2


def _clock(ms: float, separator: str) -> str:
    total = max(0, round(ms))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _cues(segments: Iterable[stt_pb2.Segment]) -> list[tuple[float, float, str]]:
    cues = []
    for seg in segments:
        text = seg.text.strip()
        if text:
            cues.append((seg.start_ms, max(seg.end_ms, seg.start_ms), text))
    return cues


def srt(segments: Iterable[stt_pb2.Segment]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    return "".join(
        f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n\n"
        for i, (start, end, text) in enumerate(_cues(segments), start=1)
    )


def vtt(segments: Iterable[stt_pb2.Segment]) -> str:
    """WebVTT: the `WEBVTT` header, then cues with `HH:MM:SS.mmm --> HH:MM:SS.mmm`."""
    body = "".join(
        f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n\n"
        for start, end, text in _cues(segments)
    )
    return f"WEBVTT\n\n{body}"
