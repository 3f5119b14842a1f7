"""Helpers for the STT tests: speech made with espeak-ng, audio conversions done with sox
(independent of the code under test), fakes for tier 2, and a streaming client."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2
from services.stt.engine import DecodeOptions, Segment, Transcript, Word

RATE = 16_000
S16 = audio_pb2.AUDIO_ENCODING_PCM_S16LE
F32 = audio_pb2.AUDIO_ENCODING_PCM_F32LE


def need_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)}: apt-get install -y espeak-ng sox")


def speak(text: str, path: Path) -> Path:
    """`text` spoken by espeak-ng into a WAV file (22.05 kHz mono)."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def sox(src: Path, dest: Path, rate: int, channels: int = 1) -> Path:
    subprocess.run(
        ["sox", str(src), "-r", str(rate), "-c", str(channels), str(dest)],
        check=True,
        capture_output=True,
    )
    return dest


def raw(src: Path, rate: int, channels: int = 1, encoding: int = S16) -> bytes:
    """Raw interleaved PCM of a file, converted by sox."""
    kind = ["-e", "signed", "-b", "16"] if encoding == S16 else ["-e", "floating-point", "-b", "32"]
    out = subprocess.run(
        ["sox", str(src), "-t", "raw", "-r", str(rate), "-c", str(channels), *kind, "-L", "-"],
        check=True,
        capture_output=True,
    )
    return out.stdout


def wav_duration(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_s16(samples))
    return path


def to_s16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def tone(seconds: float, amplitude: float = 0.3, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def white_noise(seconds: float, amplitude: float = 0.1, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def pcm_format(rate: int = RATE, channels: int = 1, encoding: int = S16) -> audio_pb2.AudioFormat:
    return audio_pb2.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=channels)


def stream_config(
    fmt: audio_pb2.AudioFormat | None = None, partials: bool = False, **kw: object
) -> stt_pb2.StreamingRecognizeRequest:
    config = stt_pb2.StreamingConfig(format=fmt or pcm_format(), partial_results=partials, **kw)
    return stt_pb2.StreamingRecognizeRequest(config=config)


def chunks(data: bytes, size: int) -> list[stt_pb2.StreamingRecognizeRequest]:
    return [
        stt_pb2.StreamingRecognizeRequest(audio=data[i : i + size])
        for i in range(0, len(data), size)
    ]


async def stream(
    stub, config: stt_pb2.StreamingRecognizeRequest, data: bytes, chunk_bytes: int = 640
) -> list[stt_pb2.StreamingRecognizeResponse]:
    """Send the config and the audio in chunks (20 ms of 16 kHz s16le by default) while
    reading every response; returns them all once the server ends the stream."""
    call = stub.StreamingRecognize()

    async def write() -> None:
        await call.write(config)
        for request in chunks(data, chunk_bytes):
            await call.write(request)
        await call.done_writing()

    writer = asyncio.create_task(write())
    responses = [r async for r in call]
    await writer
    return responses


async def read_rest(call) -> list[stt_pb2.StreamingRecognizeResponse]:
    """Every response left on a call read with `read()` (it cannot be iterated as well)."""
    import grpc

    out = []
    while (response := await call.read()) is not grpc.aio.EOF:
        out.append(response)
    return out


def kinds(responses: list[stt_pb2.StreamingRecognizeResponse]) -> list[str]:
    """'started0', 'partial0', 'ended0', 'final0', ... in the order they came."""
    out = []
    for r in responses:
        kind = r.WhichOneof("event")
        if kind == "result":
            label = "final" if r.result.is_final else "partial"
            out.append(label + str(r.result.utterance_index))
        else:
            event = getattr(r, kind)
            out.append(kind.split("_")[1] + str(event.utterance_index))
    return out


def finals(responses: list[stt_pb2.StreamingRecognizeResponse]) -> list[stt_pb2.RecognitionResult]:
    return [r.result for r in responses if r.WhichOneof("event") == "result" and r.result.is_final]


class EnergyDetector:
    """Tier-2 VAD: a window is speech (1.0) when its RMS is above 0.01, else silence (0.0)."""

    def new_scorer(self) -> EnergyDetector:
        return self

    def score(self, windows: np.ndarray) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros(0, np.float32)
        rms = np.sqrt(np.mean(np.square(windows), axis=1))
        return (rms > 0.01).astype(np.float32)


class FakeEngine:
    """Tier-2 engine: answers `texts[round(seconds, 1)]` (default "hello world"), words spread
    evenly over the audio; records every call. `gate`, when set, holds best-effort decodes
    until it is released."""

    model_id = "fake-whisper"
    device = "cpu"
    compute_type = "int8"

    def __init__(
        self,
        multilingual: bool = False,
        texts: dict[float, str] | None = None,
        no_speech_prob: float = 0.01,
        avg_logprob: float = -0.2,
    ) -> None:
        self.multilingual = multilingual
        self.languages = ("en", "fr", "mg") if multilingual else ("en",)
        self.texts = texts or {}
        self.no_speech_prob, self.avg_logprob = no_speech_prob, avg_logprob
        self.calls: list[tuple[int, DecodeOptions]] = []
        self.gate: threading.Event | None = None
        self.closed = False

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        if options.best_effort and self.gate is not None:
            self.gate.wait(timeout=30)
        self.calls.append((len(audio), options))
        seconds = len(audio) / RATE
        text = self.texts.get(round(seconds, 1), "hello world")
        tokens = text.split()
        step = seconds / max(len(tokens), 1)
        words = tuple(Word(w, i * step, (i + 1) * step, 0.9) for i, w in enumerate(tokens))
        segment = Segment(
            text,
            0.0,
            seconds,
            self.avg_logprob,
            self.no_speech_prob,
            1.2,
            words if options.word_timestamps else (),
        )
        return Transcript((segment,), options.language, seconds)

    def load(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
