"""Audio out: resample the model's float samples, encode them, cut them into chunks.

Each synthesized segment is resampled on its own (segments are separate syntheses with
silence between sentences, so there is no signal to keep continuous across them, and no
resampler delay holds a segment's tail back until the next one is ready), encoded as
16-bit or float PCM, and sent at once in chunks of at most `max_chunk_ms`. WAV output is
the same PCM after a streaming RIFF header (length fields 0xFFFFFFFF: unknown) that leads
the first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.runtime.wav import streaming_wav_header

Encoding = Literal["pcm_s16le", "pcm_f32le", "wav"]
Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Chunk:
    """One piece of an output stream: encoded bytes (the WAV header leads the first), its index
    from 0, and where it sits in the audio, in milliseconds."""

    data: bytes
    index: int
    offset_ms: float
    duration_ms: float


def resample(samples: Samples, in_rate: int, out_rate: int) -> Samples:
    """Resample a mono float32 signal (soxr, high quality)."""
    if in_rate == out_rate or samples.size == 0:
        return samples
    try:
        import soxr
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("resampling needs soxr: pip install 'milo[tts]'") from exc
    out: Samples = soxr.resample(samples, in_rate, out_rate, quality="HQ").astype(np.float32)
    return out


def encode_pcm(samples: Samples, encoding: Encoding) -> bytes:
    """Float samples in [-1, 1] (clipped) as little-endian s16 or f32 bytes."""
    clipped = np.clip(samples, -1.0, 1.0)
    if encoding == "pcm_f32le":
        return clipped.astype("<f4").tobytes()
    return np.round(clipped * 32767.0).astype("<i2").tobytes()


class AudioEncoder:
    """Turns segments of model audio into numbered chunks for one output stream."""

    def __init__(self, encoding: Encoding, in_rate: int, out_rate: int, max_chunk_ms: int):
        self.encoding, self.in_rate, self.out_rate = encoding, in_rate, out_rate
        self.sample_width = 4 if encoding == "pcm_f32le" else 2
        self.max_chunk_samples = max(1, out_rate * max_chunk_ms // 1000)
        self.samples_sent = 0
        self.chunks_sent = 0

    @property
    def duration_ms(self) -> float:
        """Milliseconds of audio sent so far, at the output rate."""
        return self.samples_sent * 1000.0 / self.out_rate

    def header(self) -> bytes:
        """The streaming WAV header for "wav" output (length fields unknown), else b""."""
        return streaming_wav_header(self.out_rate) if self.encoding == "wav" else b""

    def push(self, samples: Samples) -> list[Chunk]:
        """Chunks for one segment's samples (at the model's rate), sent at once."""
        data = encode_pcm(resample(samples, self.in_rate, self.out_rate), self.encoding)
        step = self.max_chunk_samples * self.sample_width
        chunks = [self._chunk(data[i : i + step]) for i in range(0, len(data), step)]
        if not chunks and self.chunks_sent == 0 and self.encoding == "wav":
            chunks = [self._chunk(b"")]
        return chunks

    def _chunk(self, pcm: bytes) -> Chunk:
        count = len(pcm) // self.sample_width
        prefix = self.header() if self.chunks_sent == 0 else b""
        chunk = Chunk(
            prefix + pcm, self.chunks_sent, self.duration_ms, count * 1000.0 / self.out_rate
        )
        self.samples_sent += count
        self.chunks_sent += 1
        return chunk
