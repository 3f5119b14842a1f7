"""The native routes: /v1/transcribe, /v1/translate, /v1/chat (SSE), /v1/speak (WAV)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from google.protobuf import json_format

from gateway.core import GatewayCore
from gateway.http import schemas as s
from gateway.http.deps import ERRORS, bridge, check_text, core
from gateway.http.media import recognize_request, start_speech
from gateway.http.streams import SSE_EVENT, prime, sse, sse_guard
from gateway.upstream import ROLES
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from milo.translate.v1 import translate_pb2
from milo.tts.v1 import tts_pb2

router = APIRouter(prefix="/v1", tags=["native"], responses=ERRORS)
Core = Annotated[GatewayCore, Depends(core)]


def transcription(reply: stt_pb2.RecognizeResponse) -> s.Transcription:
    """STT's reply as the route's JSON body (times in ms)."""
    segments = [
        s.Segment(
            text=seg.text,
            start_ms=seg.start_ms,
            end_ms=seg.end_ms,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
            words=[
                s.Word(word=w.word, start_ms=w.start_ms, end_ms=w.end_ms, probability=w.probability)
                for w in seg.words
            ],
        )
        for seg in reply.segments
    ]
    return s.Transcription(
        text=reply.text,
        language=reply.language,
        duration_ms=reply.audio_duration_ms,
        processing_ms=reply.processing_ms,
        segments=segments,
    )


@router.post(
    "/transcribe",
    response_model=s.Transcription,
    summary="Transcribe an audio file (multipart `file`)",
)
async def transcribe(
    core: Core,
    file: Annotated[UploadFile, File(description="WAV, FLAC, Ogg, MP3 or WebM audio")],
    language: Annotated[str | None, Form(pattern=r"^[a-z]{2,3}$")] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    word_timestamps: Annotated[bool, Form()] = True,
    beam_size: Annotated[int | None, Form(ge=1, le=20)] = None,
) -> s.Transcription:
    """The uploaded recording's text, with segments and word times in ms. `language` unset:
    the STT service's default. 415 for a file that is not audio, 400 for an empty one."""
    request = await recognize_request(file, language, prompt, word_timestamps, beam_size)
    return transcription(await core.transcribe(request))


@router.post("/translate", response_model=s.TranslateOut, summary="Translate a text")
async def translate(body: s.TranslateIn, request: Request, core: Core) -> s.TranslateOut:
    """`text` translated from `source` to `target`, with its token counts and the model's
    language codes. 400 for a text over the gateway's max_text_chars."""
    check_text(body.text, bridge(request).settings)
    reply = await core.translate(
        translate_pb2.TranslateRequest(
            texts=[body.text],
            source_language=body.source,
            target_language=body.target,
            beam_size=body.beam_size,
        )
    )
    out = reply.translations[0]
    return s.TranslateOut(
        text=out.text,
        source=body.source,
        target=body.target,
        source_model_code=reply.source_model_code,
        target_model_code=reply.target_model_code,
        input_tokens=out.input_tokens,
        output_tokens=out.output_tokens,
        truncated=out.truncated,
        processing_ms=reply.processing_ms,
    )


def chat_request(body: s.ChatIn) -> llm_pb2.ChatRequest:
    """The body as the LLM's ChatRequest; an option left out stays unset (the server's)."""
    sampling = llm_pb2.SamplingOptions(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repeat_penalty=body.repeat_penalty,
        max_tokens=body.max_tokens,
        stop=body.stop,
        seed=body.seed,
    )
    messages = [llm_pb2.Message(role=ROLES[m.role], content=m.content) for m in body.messages]
    return llm_pb2.ChatRequest(messages=messages, sampling=sampling, allow_cloud=body.allow_cloud)


_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: `delta` ({text}) events, then one `done` event "
        "(finish_reason, usage, timings); a failure mid-stream is a last `error` event",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
}


@router.post(
    "/chat",
    summary="Chat with the LLM, streamed as server-sent events",
    response_class=StreamingResponse,
    responses=_SSE_DOC,
)
async def chat(body: s.ChatIn, request: Request, core: Core) -> StreamingResponse:
    """The LLM's reply as server-sent events. A failure before the first token is an HTTP
    error; after it, a last `error` event. 400 for a message over max_text_chars."""
    for m in body.messages:
        check_text(m.content, bridge(request).settings, "a message")
    _, stream = await prime(core.chat(chat_request(body)))

    async def events() -> AsyncIterator[bytes]:
        async for reply in stream:
            if reply.HasField("delta"):
                yield sse({"text": reply.delta.text}, "delta")
            else:
                done = json_format.MessageToDict(
                    reply.done,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
                done["finish_reason"] = (
                    llm_pb2.FinishReason.Name(reply.done.finish_reason)
                    .removeprefix("FINISH_REASON_")
                    .lower()
                )
                yield sse(done, "done")

    path = request.url.path
    return StreamingResponse(
        sse_guard(path, events(), lambda e: sse(e, "error")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


_AUDIO_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the speech, streamed as it is synthesized: a WAV file whose header says "
        "'size unknown', or raw s16le PCM (its rate in X-Sample-Rate)",
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/L16": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/speak",
    summary="Speak a text (Malagasy); streamed audio",
    response_class=StreamingResponse,
    responses=_AUDIO_DOC,
)
async def speak(body: s.SpeakIn, request: Request, core: Core) -> StreamingResponse:
    """The text spoken, streamed as it is synthesized, in `format`; its sample rate (Hz) is
    in X-Sample-Rate. 400 for a text over max_text_chars."""
    check_text(body.text, bridge(request).settings)
    tts_request = tts_pb2.SynthesizeRequest(
        text=body.text,
        voice=body.voice,
        speed=body.speed,
        sample_rate_hz=body.sample_rate_hz,
        seed=body.seed,
    )
    speech = await start_speech(core, tts_request, body.format)
    return StreamingResponse(speech.body, media_type=speech.media_type, headers=speech.headers)
