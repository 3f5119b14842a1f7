"""Speech payloads: 16-bit PCM from WAV files (or espeak-ng), cut in chunks, sent in time."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.loadtest import payloads


@dataclass(frozen=True)
class Speech:
    """A clip of raw s16le PCM with its format."""

    name: str
    pcm: bytes
    sample_rate: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame: 2 (s16le) times the channels."""
        return 2 * self.channels

    @property
    def duration_s(self) -> float:
        """The clip's length in seconds."""
        return len(self.pcm) / self.frame_bytes / self.sample_rate

    def chunks(self, chunk_ms: int) -> list[bytes]:
        """The PCM in chunks of `chunk_ms` milliseconds (the last may be shorter)."""
        size = max(1, self.sample_rate * chunk_ms // 1000) * self.frame_bytes
        return [self.pcm[i : i + size] for i in range(0, len(self.pcm), size)]

    def silence(self, ms: int) -> bytes:
        """`ms` milliseconds of silence in the clip's format."""
        return b"\x00" * (self.sample_rate * ms // 1000) * self.frame_bytes


def read_wav(path: Path, rate_hz: int | None = None) -> Speech:
    """A 16-bit PCM WAV file, resampled to `rate_hz` when given (and soxr is installed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; 16-bit PCM WAV is required")
    if not pcm:
        raise ValueError(f"{path}: no audio")
    if rate_hz and rate_hz != rate:
        pcm, rate = _resample(pcm, rate, rate_hz, channels)
    return Speech(path.name, pcm, rate, channels)


def _resample(pcm: bytes, rate: int, to: int, channels: int) -> tuple[bytes, int]:
    try:
        import soxr
    except ImportError:  # the services resample anyway: send the file's own rate
        return pcm, rate
    samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
    out = soxr.resample(samples, rate, to)
    return np.asarray(out, dtype="<i2").tobytes(), to


def espeak(texts: list[str], voice: str, workdir: Path) -> list[Path]:
    """Speak each text with espeak-ng into a WAV file in `workdir`."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng is not installed (apt-get install espeak-ng): install "
            "it, or pass your own speech with --payload FILE.wav"
        )
    paths = []
    for i, text in enumerate(texts):
        path = workdir / f"speech-{voice}-{i:03d}.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", "150", "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        paths.append(path)
    return paths


async def paced(chunks: list[bytes], chunk_s: float, pace: float) -> AsyncIterator[bytes]:
    """Yield the chunks as a microphone would: chunk i once its audio has been recorded,
    i.e. at (i + 1) * chunk_s / pace from the start; pace 0: all at once."""
    start = time.monotonic()
    for i, chunk in enumerate(chunks):
        if pace > 0:
            await asyncio.sleep(max(0.0, start + (i + 1) * chunk_s / pace - time.monotonic()))
        yield chunk


def speech_payloads(files: list[Path], language: str, rate_hz: int, workdir: Path) -> list[Speech]:
    """Speech from the user's files: WAV files and folders as they are; the lines of text or
    JSONL files spoken with espeak-ng. No files: built-in sentences in `language`."""
    wavs, texts = payloads.split_audio_files(files)
    lines: list[str] = []
    for path in texts:
        lines.extend(
            str(payloads.field_of(r, "text", str(path))) for r in payloads.read_records(path)
        )
    if not files:
        lines = list(payloads.speech_texts(language))
    if lines:
        wavs.extend(espeak(lines, payloads.espeak_voice(language), workdir))
    return [read_wav(path, rate_hz) for path in wavs]
