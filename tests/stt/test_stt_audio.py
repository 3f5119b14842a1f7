"""Tier 1: audio in -> 16 kHz mono float32 (decoding, raw PCM, resampling, bad input)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from services.runtime.errors import InvalidArgument
from services.stt.audio import AudioSpec, PcmConverter, decode_clip

sys.path.insert(0, str(Path(__file__).parent))
from stt_support import need_tools, raw, sox, tone, write_wav

LIMIT = 16_000 * 600


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * 16_000 / len(audio))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    need_tools()
    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav", tone(1.0, 0.5, 440.0))


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (44_100, 2), (48_000, 1)])
@pytest.mark.parametrize("encoding", ["s16le", "f32le"])
def test_raw_pcm_at_any_rate_and_channels_becomes_16k_mono(clip, rate, channels, encoding):
    from stt_support import F32, S16

    data = raw(clip, rate, channels, S16 if encoding == "s16le" else F32)
    audio = decode_clip(data, AudioSpec(encoding, rate, channels), LIMIT)
    assert audio.dtype == np.float32
    assert abs(len(audio) - 16_000) <= 16
    assert dominant_hz(audio) == pytest.approx(440, abs=2)
    assert 0.45 < float(np.max(np.abs(audio))) < 0.55  # channels averaged, not summed


def test_chunked_conversion_equals_whole(clip):
    data = raw(clip, 44_100, 2)
    whole = decode_clip(data, AudioSpec("s16le", 44_100, 2), LIMIT)
    converter = PcmConverter(AudioSpec("s16le", 44_100, 2))
    parts = [converter.convert(data[i : i + 1001]) for i in range(0, len(data), 1001)]  # odd sizes
    chunked = np.concatenate([*parts, converter.flush()])
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_encoded_files_are_detected_and_decoded(clip, tmp_path, suffix):
    path = sox(clip, tmp_path / f"c44.{suffix}", 44_100, 2)
    audio = decode_clip(path.read_bytes(), AudioSpec(), LIMIT)
    assert abs(len(audio) - 16_000) <= 400  # codec padding aside
    assert dominant_hz(audio) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
    ("data", "spec", "message"),
    [
        (b"", AudioSpec(), "audio is empty"),
        (b"\x00\x01garbage" * 50, AudioSpec(), "could not decode"),
        (
            b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64),
            AudioSpec("s16le", 16_000, 1),
            "says raw PCM s16le but the data is a WAV",
        ),
        (b"OggS" + bytes(100), AudioSpec("wav"), "says WAV but the data is an Ogg file"),
        (bytes(101), AudioSpec("s16le", 16_000, 1), "ends in the middle of a frame"),
        (bytes(100), AudioSpec("s16le", 16_000, 0), "channels between 1 and 16"),
        (bytes(100), AudioSpec("s16le", 0, 1), "sample_rate_hz between"),
        (
            np.full(100, 1e6, np.float32).tobytes(),
            AudioSpec("f32le", 16_000, 1),
            "not float samples",
        ),
    ],
)
def test_bad_audio_is_invalid_argument_with_a_reason(data, spec, message):
    with pytest.raises(InvalidArgument, match=message):
        decode_clip(data, spec, LIMIT)


def test_too_long_audio_is_refused(clip):
    with pytest.raises(InvalidArgument, match="limit is 500 ms"):
        decode_clip(clip.read_bytes(), AudioSpec(), 8_000)
    with pytest.raises(InvalidArgument, match="limit is 500 ms"):
        decode_clip(bytes(32_000), AudioSpec("s16le", 16_000, 1), 8_000)


def encode_with_av(container: str, codec: str, rate: int) -> bytes:
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)[None],
            format="flt",
            layout="mono",
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [("webm", "libopus", 48_000), ("ogg", "libopus", 48_000), ("mp3", "libmp3lame", 44_100)],
)
def test_compressed_browser_and_phone_formats_decode(container, codec, rate):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder to make the test file")
    audio = decode_clip(encode_with_av(container, codec, rate), AudioSpec(), LIMIT)
    assert abs(len(audio) - 16_000) <= 1_000  # encoder delay and padding aside
    assert dominant_hz(audio) == pytest.approx(440, abs=2)


def float_file(container: str, codec: str, bad: float, rate: int = 16_000) -> bytes:
    """One second of a 440 Hz tone in a float PCM codec, one sample set to `bad`."""
    import io

    import av

    samples = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    samples[rate // 2] = bad
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


# Containers that can carry float samples: WAV (format tag 3, 32 and 64 bit), AIFF-C,
# Matroska, CAF, Sun AU. FLAC is integer only; lossy codecs cannot carry a NaN through.
FLOAT_CONTAINERS = [
    ("wav", "pcm_f32le"),
    ("wav", "pcm_f64le"),
    ("aiff", "pcm_f32be"),
    ("matroska", "pcm_f32le"),
    ("caf", "pcm_f32le"),
    ("au", "pcm_f32be"),
]


@pytest.mark.parametrize(("container", "codec"), FLOAT_CONTAINERS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_samples_are_refused_in_every_container(container, codec, bad):
    with pytest.raises(InvalidArgument, match="non-finite samples"):
        decode_clip(float_file(container, codec, bad), AudioSpec(), LIMIT)


@pytest.mark.parametrize(("container", "codec"), FLOAT_CONTAINERS)
def test_finite_float_files_decode(container, codec):
    audio = decode_clip(float_file(container, codec, 0.25), AudioSpec(), LIMIT)
    assert abs(len(audio) - 16_000) <= 16 and np.all(np.isfinite(audio))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_samples_are_refused_on_the_declared_wav_and_raw_paths(bad):
    wav = float_file("wav", "pcm_f32le", bad)
    assert wav[20:22] == b"\x03\x00"  # WAVE_FORMAT_IEEE_FLOAT
    with pytest.raises(InvalidArgument, match="non-finite samples"):
        decode_clip(wav, AudioSpec("wav"), LIMIT)
    raw_f32 = np.array([0.1, bad, 0.2] * 100, np.float32).tobytes()
    for rate in (16_000, 8_000):
        with pytest.raises(InvalidArgument, match="not float samples"):
            decode_clip(raw_f32, AudioSpec("f32le", rate, 1), LIMIT)
