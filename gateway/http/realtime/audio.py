"""Realtime audio formats and their conversion to and from the gateway's s16le PCM.

`audio/pcm` is 24 kHz s16le mono, passed through as it is. `audio/pcmu` (G.711 mu-law) and
`audio/pcma` (A-law) are 8 kHz, one byte a sample, for telephony: decoded to s16le on the
way in and encoded on the way out with PyAV's G.711 codecs (FFmpeg's pcm_mulaw/pcm_alaw).
The gateway session is asked for s16le at the format's rate, so TTS resamples and the STT
service takes 8 kHz or 24 kHz directly.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, cast

from services.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class AudioFormat:
    """A Realtime audio format, named as OpenAI's Realtime API names it (GA `type`, beta
    name; https://platform.openai.com/docs/api-reference/realtime); `rate` in Hz, mono."""

    type: str  # "audio/pcm", "audio/pcmu", "audio/pcma"
    rate: int
    codec: str | None  # PyAV codec for G.711, None for PCM
    beta_name: str  # the beta API's name: pcm16, g711_ulaw, g711_alaw

    def describe(self) -> dict[str, Any]:
        """As the GA API writes it in a session."""
        return {"type": self.type, "rate": self.rate}


FORMATS = {
    "audio/pcm": AudioFormat("audio/pcm", 24_000, None, "pcm16"),
    "audio/pcmu": AudioFormat("audio/pcmu", 8_000, "pcm_mulaw", "g711_ulaw"),
    "audio/pcma": AudioFormat("audio/pcma", 8_000, "pcm_alaw", "g711_alaw"),
}
BETA_FORMATS = {f.beta_name: f for f in FORMATS.values()}
PCM = FORMATS["audio/pcm"]


def parse_format(value: object, where: str) -> AudioFormat:
    """A format as GA (`{"type": "audio/pcmu"}`, PCM with `rate` 24000) or beta
    (`"g711_ulaw"`) writes it; InvalidArgument naming `where` otherwise."""
    if isinstance(value, str) and value in BETA_FORMATS:
        return BETA_FORMATS[value]
    if isinstance(value, dict) and value.get("type") in FORMATS:
        fmt = FORMATS[value["type"]]
        rate = value.get("rate", fmt.rate)
        if rate != fmt.rate:
            raise InvalidArgument(f"{where}: {fmt.type} is {fmt.rate} Hz only, not {rate}")
        return fmt
    names = ", ".join([*FORMATS, *BETA_FORMATS])
    raise InvalidArgument(f"{where}: unsupported audio format {value!r}; use one of {names}")


def b64decode(text: object, where: str = "audio") -> bytes:
    """The bytes of a base64 string; InvalidArgument naming `where` for anything else."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"{where} is not valid base64: {exc}") from exc


def b64encode(data: bytes) -> str:
    """`data` as standard base64 text."""
    return base64.b64encode(data).decode("ascii")


class G711:
    """One direction of G.711 for one session (decoder for input, encoder for output)."""

    def __init__(self, fmt: AudioFormat, encode: bool) -> None:
        import av

        assert fmt.codec is not None
        self._av = av
        self._ctx = cast(Any, av.CodecContext.create(fmt.codec, "w" if encode else "r"))
        self._ctx.sample_rate = fmt.rate
        self._ctx.layout = "mono"
        if encode:
            self._ctx.format = "s16"
            self._ctx.open()

    def decode(self, data: bytes) -> bytes:
        """G.711 bytes -> s16le PCM (two bytes per input byte)."""
        out = [f.to_ndarray().tobytes() for f in self._ctx.decode(self._av.Packet(data))]
        return b"".join(out)

    def encode(self, pcm: bytes) -> bytes:
        """s16le PCM -> G.711 bytes (one per sample)."""
        import numpy as np

        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if not samples.size:
            return b""
        frame = self._av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._ctx.sample_rate
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class InputAudio:
    """Client audio in the session's input format -> s16le PCM for the gateway."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._g711 = G711(fmt, encode=False) if fmt.codec else None

    def to_pcm(self, data: bytes) -> bytes:
        """`data` as s16le mono PCM at the format's rate (G.711 decoded, PCM as is)."""
        return self._g711.decode(data) if self._g711 else data

    def ms(self, data: bytes) -> float:
        """Duration of `data` in the input format, in milliseconds."""
        per_sample = 1 if self.format.codec else 2
        return len(data) / per_sample / self.format.rate * 1000


class OutputAudio:
    """The gateway's s16le mono PCM -> bytes in the session's format. The session asks TTS
    for the format's rate; audio at another rate (the gateway's audio says its rate) is
    resampled here (PyAV's resampler, state kept between chunks)."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._g711 = G711(fmt, encode=True) if fmt.codec else None
        self._resamplers: dict[int, Any] = {}

    def from_pcm(self, pcm: bytes, rate: int) -> tuple[bytes, float]:
        """(bytes in the session's format, their duration in ms)."""
        if rate and rate != self.format.rate:
            pcm = self._resample(pcm, rate)
        ms = len(pcm) / 2 / self.format.rate * 1000
        return (self._g711.encode(pcm) if self._g711 else pcm), ms

    def _resample(self, pcm: bytes, rate: int) -> bytes:
        import av
        import numpy as np

        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.format.rate)
            self._resamplers[rate] = resampler
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        return b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame))
