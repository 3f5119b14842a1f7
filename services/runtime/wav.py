"""The streaming WAV header every audio producer shares (TTS, the gateway, the HTTP bridge)."""

from __future__ import annotations

import struct

UNKNOWN_LENGTH = 0xFFFFFFFF


def streaming_wav_header(
    sample_rate: int, channels: int = 1, sample_width: int = 2, float_samples: bool = False
) -> bytes:
    """A 44-byte RIFF/WAVE header whose length fields say 'unknown', for a stream."""
    fmt_tag = 3 if float_samples else 1  # WAVE_FORMAT_IEEE_FLOAT / WAVE_FORMAT_PCM
    block = channels * sample_width
    fmt = struct.pack(
        "<HHIIHH", fmt_tag, channels, sample_rate, sample_rate * block, block, sample_width * 8
    )
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_LENGTH)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", UNKNOWN_LENGTH)
    )
