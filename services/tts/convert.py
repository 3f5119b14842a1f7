"""Protobuf <-> domain types for the TTS API. Unset proto3 optional fields become None (the
server default); bad input raises InvalidArgument with a message that says what to fix."""

from __future__ import annotations

from milo.audio.v1 import audio_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.errors import InvalidArgument
from services.tts.audio import Chunk, Encoding
from services.tts.core import Done, Event, Job, Options, TtsCore
from services.tts.text import SentencePlan

AudioEncoding = audio_pb2.AudioEncoding
ENCODINGS: dict[int, Encoding] = {
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: "pcm_s16le",
    audio_pb2.AUDIO_ENCODING_PCM_S16LE: "pcm_s16le",
    audio_pb2.AUDIO_ENCODING_PCM_F32LE: "pcm_f32le",
    audio_pb2.AUDIO_ENCODING_WAV: "wav",
}
_WIRE: dict[Encoding, audio_pb2.AudioEncoding.ValueType] = {
    "pcm_s16le": audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    "pcm_f32le": audio_pb2.AUDIO_ENCODING_PCM_F32LE,
    "wav": audio_pb2.AUDIO_ENCODING_WAV,
}
LANGUAGE = "mg"


def describe(core: TtsCore) -> tts_pb2.DescribeResponse:
    """The loaded voice(s), the output formats, and the server's limits."""
    engine, settings = core.engine, core.settings
    voices = [
        tts_pb2.Voice(name=v, language=LANGUAGE, native_sample_rate_hz=engine.sample_rate)
        for v in engine.voices
    ]
    return tts_pb2.DescribeResponse(
        model_id=engine.model_id,
        voices=voices,
        default_voice=engine.voices[0],
        sample_rates_hz=core.sample_rates(),
        encodings=list(_WIRE.values()),
        max_text_chars=settings.max_text_chars,
        max_chunk_ms=settings.max_chunk_ms,
        device=engine.device,
    )


def options(request: tts_pb2.SynthesizeRequest) -> Options:
    """The request as domain options; an encoding that is not an output is InvalidArgument."""
    encoding = ENCODINGS.get(request.encoding)
    if encoding is None:
        name = (
            AudioEncoding.Name(request.encoding)
            if request.encoding in AudioEncoding.values()
            else str(request.encoding)
        )
        raise InvalidArgument(
            f"encoding {name} is not an output encoding; use PCM_S16LE (default), PCM_F32LE or WAV"
        )
    return Options(
        text=request.text,
        voice=request.voice if request.HasField("voice") else None,
        speed=request.speed if request.HasField("speed") else None,
        sample_rate=request.sample_rate_hz if request.HasField("sample_rate_hz") else None,
        encoding=encoding,
        seed=request.seed if request.HasField("seed") else None,
    )


def format_response(job: Job) -> tts_pb2.SynthesizeResponse:
    """The first message of a synthesis: the format of the audio that follows."""
    fmt = audio_pb2.AudioFormat(
        encoding=_WIRE[job.encoding], sample_rate_hz=job.sample_rate, channels=1
    )
    return tts_pb2.SynthesizeResponse(format=fmt)


def response(event: Event) -> tts_pb2.SynthesizeResponse:
    """One event of a synthesis (sentence, audio chunk or done) as a message."""
    if isinstance(event, SentencePlan):
        sentence = tts_pb2.SentenceStarted(
            sentence_index=event.index, text=event.text, normalized_text=event.normalized
        )
        return tts_pb2.SynthesizeResponse(sentence=sentence)
    if isinstance(event, Chunk):
        chunk = audio_pb2.AudioChunk(
            data=event.data,
            index=event.index,
            offset_ms=event.offset_ms,
            duration_ms=event.duration_ms,
        )
        return tts_pb2.SynthesizeResponse(audio=chunk)
    return _done(event)


def _done(event: Done) -> tts_pb2.SynthesizeResponse:
    done = tts_pb2.SynthesisDone(
        sentences=event.sentences,
        audio_duration_ms=event.audio_duration_ms,
        processing_ms=event.processing_ms,
        first_chunk_ms=event.first_chunk_ms,
        dropped_characters=event.dropped_characters,
    )
    return tts_pb2.SynthesizeResponse(done=done)
