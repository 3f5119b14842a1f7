"""Compressed speech out: PCM chunks from TTS encoded as they come (PyAV), so an MP3, Ogg
Opus, AAC or FLAC reply streams like the WAV one does.

Each format is a streamable container: MP3 frames, Ogg pages, ADTS frames, FLAC frames.
The container writes into a sink that is not seekable, so muxers that would go back to
patch a header at the end (FLAC's total sample count) leave it unset, which decoders
accept. The encoder resamples from the TTS rate to its own (PyAV's resampler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np


@dataclass(frozen=True)
class Codec:
    """How one response format is encoded: the PyAV (FFmpeg) container and codec names,
    the encoder's sample rate in Hz, and the HTTP media type."""

    container: str
    codec: str
    rate: int  # the encoder's sample rate, Hz
    media_type: str


# OpenAI's formats: mp3 and aac at 24 kHz like its pcm; Opus runs at 48 kHz in Ogg.
CODECS = {
    "mp3": Codec("mp3", "libmp3lame", 24_000, "audio/mpeg"),
    "opus": Codec("ogg", "libopus", 48_000, "audio/ogg"),
    "aac": Codec("adts", "aac", 24_000, "audio/aac"),
    "flac": Codec("flac", "flac", 24_000, "audio/flac"),
}


class _Sink:
    """A write-only file for the muxer: what it writes is taken out after each packet."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class SpeechEncoder:
    """s16le mono PCM at `rate_in` -> encoded bytes of `fmt`, piece by piece.

    Blocking (codec work): call from a worker thread for long inputs.
    """

    def __init__(self, fmt: str, rate_in: int) -> None:
        import av

        self.codec = CODECS[fmt]
        self.rate_in = rate_in
        self._sink = _Sink()
        self._out = cast(Any, av.open(self._sink, "w", format=self.codec.container))
        self._stream = cast(Any, self._out.add_stream(self.codec.codec, rate=self.codec.rate))
        self._stream.layout = "mono"
        self._closed = False

    def encode(self, pcm: bytes) -> bytes:
        """Encoded bytes ready so far (possibly none: encoders hold a frame or two)."""
        import av

        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.rate_in
            self._mux(self._stream.encode(frame))
        return self._sink.take()

    def finish(self) -> bytes:
        """The encoder's tail and the container's trailer."""
        if not self._closed:
            self._closed = True
            self._mux(self._stream.encode(None))
            self._out.close()
        return self._sink.take()

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._out.mux(packet)
