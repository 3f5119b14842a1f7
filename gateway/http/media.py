"""Audio in and out over HTTP, shared by the native and the OpenAI-compatible routes:
an uploaded file to a RecognizeRequest (415 for what is not audio), and a TTS stream to
streamed WAV, raw PCM, or MP3 / Ogg Opus / AAC / FLAC encoded as it comes (encode.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import UploadFile

from gateway.core import GatewayCore
from gateway.http.encode import CODECS, SpeechEncoder
from gateway.http.errors import HttpError
from gateway.http.streams import prime
from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.errors import InvalidArgument, Unavailable
from services.runtime.wav import streaming_wav_header

# Declared types an upload may have; the STT service reads the data itself (WAV, FLAC,
# Ogg, MP3, WebM, MP4 audio), so the list only keeps out what is plainly not audio.
_AUDIO_TYPES = (
    "audio/",
    "video/webm",
    "video/ogg",
    "video/mp4",
    "application/octet-stream",
    "application/ogg",
)


def check_upload_type(file: UploadFile) -> None:
    """Raise HttpError 415 when the upload declares a media type that is not audio (no
    declared type passes: the STT service reads the data itself)."""
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith(_AUDIO_TYPES):
        raise HttpError(
            415, f"the file is {declared}, not audio: send WAV, FLAC, Ogg, MP3 or WebM audio"
        )


async def recognize_request(
    file: UploadFile,
    language: str | None,
    prompt: str | None,
    word_timestamps: bool | None = None,
    beam_size: int | None = None,
) -> stt_pb2.RecognizeRequest:
    """The upload as a RecognizeRequest (format detected by STT from the data); None or ""
    leave a setting to the server. Raises HttpError 415 for a type that is not audio,
    InvalidArgument (400) for an empty file."""
    check_upload_type(file)
    data = await file.read()
    if not data:
        raise InvalidArgument("the file is empty: send an audio file in the `file` field")
    config = stt_pb2.RecognitionConfig(
        language=language or None,
        initial_prompt=prompt or None,
        word_timestamps=word_timestamps,
        beam_size=beam_size,
    )
    return stt_pb2.RecognizeRequest(config=config, audio=data)


@dataclass
class Speech:
    """A TTS stream, started: its format is known, its bytes still to come."""

    media_type: str
    sample_rate_hz: int
    body: AsyncIterator[bytes]

    @property
    def headers(self) -> dict[str, str]:
        """The response headers: X-Sample-Rate (Hz) and Cache-Control: no-store."""
        return {"X-Sample-Rate": str(self.sample_rate_hz), "Cache-Control": "no-store"}


async def start_speech(
    core: GatewayCore, request: tts_pb2.SynthesizeRequest, container: str
) -> Speech:
    """Call TTS and wait for its format (errors before it raise here); `container` is
    'wav' (streamed WAV, sizes unknown), 'pcm' (raw s16le) or a key of encode.CODECS."""
    request.encoding = audio_pb2.AUDIO_ENCODING_PCM_S16LE
    first, stream = await prime(core.speak(request))
    if first is None or not first.HasField("format"):
        raise Unavailable("tts: the stream did not start with its audio format")
    rate, channels = first.format.sample_rate_hz, first.format.channels or 1

    async def pcm() -> AsyncIterator[bytes]:
        async for reply in stream:
            if reply.HasField("audio") and reply.audio.data:
                yield reply.audio.data

    if container in CODECS:
        codec = CODECS[container]
        return Speech(codec.media_type, codec.rate, encoded(pcm(), container, rate))

    async def body() -> AsyncIterator[bytes]:
        if container == "wav":
            yield streaming_wav_header(rate, channels)
        async for data in pcm():
            yield data

    media = "audio/wav" if container == "wav" else f"audio/L16;rate={rate};channels={channels}"
    return Speech(media, rate, body())


async def encoded(pcm: AsyncIterator[bytes], fmt: str, rate: int) -> AsyncIterator[bytes]:
    """PCM chunks (s16le mono at `rate`) encoded in `fmt` as they come, off the event loop."""
    encoder = await asyncio.to_thread(SpeechEncoder, fmt, rate)
    async for data in pcm:
        out = await asyncio.to_thread(encoder.encode, data)
        if out:
            yield out
    tail = await asyncio.to_thread(encoder.finish)
    if tail:
        yield tail
