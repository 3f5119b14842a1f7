"""The milo.tts.v1.Tts servicer: protobuf in, domain types to `synthesis`, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from milo.audio.v1 import audio_pb2
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.errors import InvalidArgument
from services.tts import synthesis
from services.tts.audio import Chunk, Encoding
from services.tts.batcher import BatchPolicy, SynthesisBatcher
from services.tts.config import TtsSettings
from services.tts.engine import SpeechEngine
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


class TtsServicer(tts_pb2_grpc.TtsServicer):
    def __init__(self, engine: SpeechEngine, settings: TtsSettings) -> None:
        self.engine, self.settings = engine, settings
        self.batcher = SynthesisBatcher(engine, BatchPolicy(
            max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000))

    async def Describe(
        self, request: tts_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.DescribeResponse:
        engine = self.engine
        voices = [tts_pb2.Voice(name=v, language=LANGUAGE, native_sample_rate_hz=engine.sample_rate)
                  for v in engine.voices]
        return tts_pb2.DescribeResponse(
            model_id=engine.model_id, voices=voices, default_voice=engine.voices[0],
            sample_rates_hz=synthesis.sample_rates(engine),
            encodings=list(_WIRE.values()), max_text_chars=self.settings.max_text_chars,
            max_chunk_ms=self.settings.max_chunk_ms, device=engine.device,
        )  # fmt: skip

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        job = synthesis.prepare(_options(request), self.engine, self.settings)
        fmt = audio_pb2.AudioFormat(encoding=_WIRE[job.encoding], sample_rate_hz=job.sample_rate,
                                    channels=1)
        yield tts_pb2.SynthesizeResponse(format=fmt)
        async for event in synthesis.stream(job, self.engine, self.settings, self.batcher):
            yield _response(event)


def _options(request: tts_pb2.SynthesizeRequest) -> synthesis.Options:
    encoding = ENCODINGS.get(request.encoding)
    if encoding is None:
        name = AudioEncoding.Name(request.encoding) if request.encoding in AudioEncoding.values() \
            else str(request.encoding)
        raise InvalidArgument(f"encoding {name} is not an output encoding; use PCM_S16LE "
                              "(default), PCM_F32LE or WAV")
    return synthesis.Options(
        text=request.text,
        voice=request.voice if request.HasField("voice") else None,
        speed=request.speed if request.HasField("speed") else None,
        sample_rate=request.sample_rate_hz if request.HasField("sample_rate_hz") else None,
        encoding=encoding,
        seed=request.seed if request.HasField("seed") else None,
    )


def _response(event: synthesis.Event) -> tts_pb2.SynthesizeResponse:
    if isinstance(event, SentencePlan):
        sentence = tts_pb2.SentenceStarted(sentence_index=event.index, text=event.text,
                                           normalized_text=event.normalized)
        return tts_pb2.SynthesizeResponse(sentence=sentence)
    if isinstance(event, Chunk):
        chunk = audio_pb2.AudioChunk(data=event.data, index=event.index,
                                     offset_ms=event.offset_ms, duration_ms=event.duration_ms)
        return tts_pb2.SynthesizeResponse(audio=chunk)
    done = tts_pb2.SynthesisDone(
        sentences=event.sentences, audio_duration_ms=event.audio_duration_ms,
        processing_ms=event.processing_ms, first_chunk_ms=event.first_chunk_ms,
        dropped_characters=event.dropped_characters,
    )
    return tts_pb2.SynthesizeResponse(done=done)
