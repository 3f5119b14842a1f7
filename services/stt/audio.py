"""Audio in: any encoded clip PyAV decodes, or raw PCM with a declared format, turned into
16 kHz mono float32 (the engine's input). Bad input raises InvalidArgument saying what is
wrong; non-finite samples (NaN, infinity) are refused on every path, raw PCM, WAV and any
container, as soon as they are seen (a NaN fed to the model costs seconds of decoding and
gives nothing). Channels are averaged; resampling uses PyAV's resampler (libswresample),
which keeps its state between chunks, so a stream converted chunk by chunk equals the whole
converted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.runtime.errors import InvalidArgument
from services.stt.engine import SAMPLE_RATE

Encoding = Literal["s16le", "f32le", "wav", "container"]
RAW: tuple[Encoding, ...] = ("s16le", "f32le")
_DTYPE = {"s16le": np.int16, "f32le": np.float32}
_MAGIC = (  # (offset, bytes, name): containers a raw PCM declaration must not hide
    (0, b"RIFF", "a WAV (RIFF) file"),
    (0, b"RF64", "a WAV (RF64) file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"ID3", "an MP3 file"),
    (0, b"\x1a\x45\xdf\xa3", "a WebM/Matroska file"),
    (4, b"ftyp", "an MP4/M4A file"),
)


@dataclass(frozen=True)
class AudioSpec:
    """What the caller declared. Rate and channels matter only for raw PCM."""

    encoding: Encoding = "container"
    rate: int = 0
    channels: int = 0

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame: channels times 2 (s16le) or 4 (f32le)."""
        return self.channels * (2 if self.encoding == "s16le" else 4)

    def check_raw(self) -> None:
        """Raise InvalidArgument unless this is raw PCM with a rate of 4000 to 384000 Hz and 1 to
        16 channels."""
        if self.encoding not in RAW:
            raise InvalidArgument(f"encoding {self.encoding} is not raw PCM")
        if not 4_000 <= self.rate <= 384_000:
            raise InvalidArgument(
                f"raw PCM needs format.sample_rate_hz between 4000 and 384000, got {self.rate}"
            )
        if not 1 <= self.channels <= 16:
            raise InvalidArgument(
                f"raw PCM needs format.channels between 1 and 16, got {self.channels}"
            )


def sniff(data: bytes) -> str | None:
    """The container `data` starts like, or None."""
    for offset, magic, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def decode_clip(data: bytes, spec: AudioSpec, max_samples: int) -> np.ndarray:
    """A whole clip -> 16 kHz mono float32. Longer than `max_samples` -> InvalidArgument."""
    if not data:
        raise InvalidArgument("audio is empty: send the clip's bytes in `audio`")
    if spec.encoding in RAW:
        converter = PcmConverter(spec)
        audio = np.concatenate([converter.convert(data), converter.flush()])
    else:
        is_wav = data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE"
        if spec.encoding == "wav" and not is_wav:
            what = sniff(data) or "not a WAV file"
            raise InvalidArgument(
                f"format says WAV but the data is {what}; "
                "declare CONTAINER to have the format detected"
            )
        audio = _decode_container(data, max_samples)
    if audio.size == 0:
        raise InvalidArgument("audio is empty: it decoded to no samples")
    if not np.all(np.isfinite(audio)):  # whatever the decoder: never hand NaN to the model
        raise InvalidArgument(
            "the audio holds non-finite samples (NaN or infinity): it cannot be transcribed"
        )
    if audio.size > max_samples:
        raise InvalidArgument(
            f"audio is {audio.size * 1000 // SAMPLE_RATE} ms long; the limit is "
            f"{max_samples * 1000 // SAMPLE_RATE} ms (split it or use StreamingRecognize)"
        )
    return audio


def _decode_container(data: bytes, max_samples: int) -> np.ndarray:
    import av

    # Keep the channels, average them here: libswresample's mono down-mix adds +3 dB.
    resampler = av.AudioResampler(format="flt", rate=SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidArgument("the data holds no audio stream")
            for frame in container.decode(audio=0):
                _check_frame(frame)
                frame.pts = None
                parts.append(_frames_to_array(resampler.resample(frame)))
                total += parts[-1].size
                if total > max_samples:
                    break  # over the limit: stop decoding, decode_clip reports it
            parts.append(_frames_to_array(resampler.resample(None)))
    except av.error.FFmpegError as exc:
        raise InvalidArgument(
            "could not decode the audio (send WAV, FLAC, Ogg/Opus, MP3 or WebM, or raw PCM "
            f"with a declared format): {exc.strerror or type(exc).__name__}"
        ) from exc
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class PcmConverter:
    """Raw interleaved PCM chunks (any size, any rate and channel count) -> 16 kHz mono."""

    def __init__(self, spec: AudioSpec) -> None:
        spec.check_raw()
        self.spec = spec
        self._carry = b""  # an incomplete frame left over from the last chunk
        self._first = True
        self._resampler: Any = None
        if spec.rate != SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes) -> np.ndarray:
        """The next chunk (any length; an incomplete last frame waits for the next chunk) as 16
        kHz mono float32 samples. Raises InvalidArgument if the first chunk is really a container
        file, or for f32le samples that are not finite or far outside [-1, 1]."""
        if self._first and data:
            self._first = False
            found = sniff(data)
            if found:
                raise InvalidArgument(
                    f"format says raw PCM {self.spec.encoding} but the data is {found}; "
                    "declare WAV or CONTAINER for encoded audio"
                )
        data = self._carry + data
        usable = len(data) - len(data) % self.spec.frame_bytes
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype=_DTYPE[self.spec.encoding])
        if self.spec.encoding == "f32le":
            _check_float(samples)
        mono = _to_float(samples).reshape(-1, self.spec.channels).mean(axis=1, dtype=np.float32)
        return mono if self._resampler is None else self._resample(mono)

    def flush(self) -> np.ndarray:
        """The resampler's tail, at the end of the audio."""
        if self._carry:
            raise InvalidArgument(
                f"the audio ends in the middle of a frame: {self.spec.encoding} with "
                f"{self.spec.channels} channel(s) needs a multiple of {self.spec.frame_bytes} "
                "bytes; check the declared format"
            )
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return _frames_to_array(self._resampler.resample(None))

    def _resample(self, mono: np.ndarray) -> np.ndarray:
        import av

        if mono.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.spec.rate
        return _frames_to_array(self._resampler.resample(frame))


_FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})


def _check_frame(frame: Any) -> None:
    """A decoded frame of float samples (float WAV, FLAC is integer only, Opus/Vorbis/AAC
    decode to float) must be finite: resampling would smear a NaN over its neighbours."""
    if frame.format.name in _FLOAT_FORMATS and not np.all(np.isfinite(frame.to_ndarray())):
        raise InvalidArgument(
            "the audio holds non-finite samples (NaN or infinity): it cannot be transcribed; "
            "check the encoder that wrote the file"
        )


def _frames_to_array(frames: list[Any]) -> np.ndarray:
    """Packed float frames -> one mono array (channels averaged)."""
    if not frames:
        return np.zeros(0, np.float32)
    mono = [f.to_ndarray().reshape(-1, f.layout.nb_channels).mean(axis=1) for f in frames]
    return np.concatenate(mono).astype(np.float32)


def _to_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32, copy=True)


def _check_float(samples: np.ndarray) -> None:
    if samples.size == 0:
        return
    if not np.all(np.isfinite(samples)) or float(np.max(np.abs(samples))) > 8.0:
        raise InvalidArgument(
            "format says f32le but the data is not float samples in [-1, 1] (NaN, infinite "
            "or huge values): check the declared encoding"
        )
