"""Protobuf <-> domain types for the STT API. Unset proto3 optional fields become None (the
server default); times go from seconds to milliseconds here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2
from services.runtime.errors import InvalidArgument
from services.stt.audio import AudioSpec, Encoding
from services.stt.core import Recognition, RequestOptions, SttCore
from services.stt.engine import SAMPLE_RATE, Segment, Transcript
from services.stt.stream import Emitted, Result, SpeechEnded, SpeechStarted
from services.stt.vad import VadParams

_ENCODINGS: dict[int, Encoding] = {
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: "container",
    audio_pb2.AUDIO_ENCODING_CONTAINER: "container",
    audio_pb2.AUDIO_ENCODING_WAV: "wav",
    audio_pb2.AUDIO_ENCODING_PCM_S16LE: "s16le",
    audio_pb2.AUDIO_ENCODING_PCM_F32LE: "f32le",
}
INPUT_ENCODINGS = (
    audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    audio_pb2.AUDIO_ENCODING_PCM_F32LE,
    audio_pb2.AUDIO_ENCODING_WAV,
    audio_pb2.AUDIO_ENCODING_CONTAINER,
)


@dataclass(frozen=True)
class ServerInfo:
    """The parts of Describe that come from settings, not from the loaded model."""

    max_concurrent_streams: int
    partial_results: bool


def audio_spec(fmt: audio_pb2.AudioFormat) -> AudioSpec:
    """The declared audio format; raises InvalidArgument for an unknown encoding."""
    encoding = _ENCODINGS.get(fmt.encoding)
    if encoding is None:
        raise InvalidArgument(f"unknown audio encoding {fmt.encoding}")
    return AudioSpec(encoding, int(fmt.sample_rate_hz), int(fmt.channels))


def request_options(config: stt_pb2.RecognitionConfig) -> RequestOptions:
    """The request's recognition options; unset fields are None (the server default)."""
    return RequestOptions(
        language=config.language if config.HasField("language") else None,
        beam_size=config.beam_size if config.HasField("beam_size") else None,
        word_timestamps=config.word_timestamps if config.HasField("word_timestamps") else None,
        initial_prompt=config.initial_prompt if config.HasField("initial_prompt") else None,
    )


def vad_params(core: SttCore, vad: stt_pb2.VadConfig) -> VadParams:
    """The stream's VAD settings: the request's, else the server's; raises InvalidArgument for a
    value out of range."""

    def get(name: str) -> float | int | None:
        return getattr(vad, name) if vad.HasField(name) else None  # type: ignore[arg-type]

    return core.vad_params(
        threshold=get("threshold"),
        min_speech_ms=get("min_speech_ms"),
        min_silence_ms=get("min_silence_ms"),
        speech_pad_ms=get("speech_pad_ms"),
        max_utterance_ms=get("max_utterance_ms"),
    )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def segments(transcript: Transcript) -> list[stt_pb2.Segment]:
    """The transcript's segments as protobuf, times in milliseconds."""
    return [_segment(s) for s in transcript.segments]


def _segment(s: Segment) -> stt_pb2.Segment:
    words = [
        stt_pb2.Word(
            word=w.word,
            start_ms=_ms(w.start),
            end_ms=_ms(w.end),
            probability=min(max(w.probability, 0.0), 1.0),
        )
        for w in s.words
    ]
    return stt_pb2.Segment(
        text=s.text,
        start_ms=_ms(s.start),
        end_ms=_ms(s.end),
        avg_logprob=s.avg_logprob,
        no_speech_prob=s.no_speech_prob,
        words=words,
    )


def recognize_response(result: Recognition) -> stt_pb2.RecognizeResponse:
    """The Recognize response: text, segments, language, audio length and processing time (ms)."""
    t = result.transcript
    return stt_pb2.RecognizeResponse(
        text=t.text,
        segments=segments(t),
        language=t.language,
        audio_duration_ms=_ms(result.audio_seconds),
        processing_ms=result.processing_seconds * 1000,
    )


def stream_response(emitted: Emitted) -> stt_pb2.StreamingRecognizeResponse:
    """The streaming response for one event (speech started or ended, or a partial or final
    result), with the milliseconds of audio processed so far."""
    event, processed = emitted.event, _ms(emitted.processed)
    if isinstance(event, SpeechStarted):
        started = stt_pb2.SpeechStarted(utterance_index=event.index, offset_ms=_ms(event.offset))
        return stt_pb2.StreamingRecognizeResponse(
            speech_started=started, audio_processed_ms=processed
        )
    if isinstance(event, SpeechEnded):
        ended = stt_pb2.SpeechEnded(utterance_index=event.index, offset_ms=_ms(event.offset))
        return stt_pb2.StreamingRecognizeResponse(speech_ended=ended, audio_processed_ms=processed)
    return stt_pb2.StreamingRecognizeResponse(result=_result(event), audio_processed_ms=processed)


def _result(r: Result) -> stt_pb2.RecognitionResult:
    t = r.transcript
    return stt_pb2.RecognitionResult(
        is_final=r.is_final,
        utterance_index=r.index,
        text=t.text,
        segments=segments(t),
        language=t.language,
        start_ms=_ms(r.start),
        end_ms=_ms(r.end),
        processing_ms=r.processing * 1000,
    )


def describe(core: SttCore, info: ServerInfo) -> stt_pb2.DescribeResponse:
    """The Describe response: model, languages, limits, device and what the server supports."""
    engine, d = core.engine, core.defaults
    return stt_pb2.DescribeResponse(
        model_id=engine.model_id,
        languages=list(engine.languages),
        default_language=core.default_language,
        multilingual=engine.multilingual,
        model_sample_rate_hz=SAMPLE_RATE,
        max_audio_bytes=d.max_audio_bytes,
        max_audio_ms=d.max_audio_ms,
        input_encodings=list(INPUT_ENCODINGS),
        device=engine.device,
        compute_type=engine.compute_type,
        word_timestamps=True,
        partial_results=info.partial_results,
        max_concurrent_streams=info.max_concurrent_streams,
    )
