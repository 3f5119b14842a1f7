"""OpenAI-compatible routes, so OpenAI's SDKs and tools work unchanged against Milo:
/v1/audio/transcriptions, /v1/audio/speech, /v1/chat/completions and /v1/models.
Errors come in OpenAI's shape (see errors.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from gateway.core import GatewayCore
from gateway.http import openai_schemas as o
from gateway.http import subtitles
from gateway.http.deps import ERRORS, bridge, check_text, core
from gateway.http.media import recognize_request, start_speech
from gateway.http.streams import SSE_EVENT, prime, sse, sse_guard
from gateway.upstream import ROLES
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.errors import ContextLengthExceeded, InvalidArgument

STARTED = int(time.time())  # /v1/models' `created`: when this gateway started (Unix s)
router = APIRouter(prefix="/v1", tags=["openai"], responses=ERRORS)
Core = Annotated[GatewayCore, Depends(core)]
_FINISH = {llm_pb2.FINISH_REASON_LENGTH: "length"}
_PCM_RATE = 24000  # OpenAI's pcm is 24 kHz s16le mono
_TRANSCRIPTION_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "json: {text}; verbose_json: segments and words in seconds; text: plain; "
        "srt and vtt: subtitles, one cue per segment",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/TranscriptionOut"},
                        {"$ref": "#/components/schemas/VerboseTranscription"},
                    ]
                }
            },
            "text/plain": {"schema": {"type": "string"}},
            "text/vtt": {"schema": {"type": "string"}},
        },
    }
}


_SPEECH_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the speech, streamed: mp3 (audio/mpeg), opus (audio/ogg), aac "
        "(audio/aac), flac (audio/flac), wav (audio/wav) or pcm (s16le mono, 24 kHz)",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in (
                "audio/mpeg",
                "audio/ogg",
                "audio/aac",
                "audio/flac",
                "audio/wav",
                "audio/L16",
            )
        },
    }
}


def verbose(reply: stt_pb2.RecognizeResponse) -> o.VerboseTranscription:
    """STT's reply in OpenAI's `verbose_json` shape (ms become s)."""
    segments = [
        o.VerboseSegment(
            id=i,
            seek=0,
            start=seg.start_ms / 1000,
            end=seg.end_ms / 1000,
            text=seg.text,
            tokens=[],
            temperature=0.0,
            avg_logprob=seg.avg_logprob,
            compression_ratio=0.0,
            no_speech_prob=seg.no_speech_prob,
        )
        for i, seg in enumerate(reply.segments)
    ]
    words = [
        o.VerboseWord(word=w.word, start=w.start_ms / 1000, end=w.end_ms / 1000)
        for seg in reply.segments
        for w in seg.words
    ]
    return o.VerboseTranscription(
        language=reply.language,
        duration=reply.audio_duration_ms / 1000,
        text=reply.text,
        segments=segments,
        words=words,
    )


@router.post(
    "/audio/transcriptions",
    summary="OpenAI: transcribe audio",
    responses=_TRANSCRIPTION_DOC,
    response_class=Response,
)
async def transcriptions(
    core: Core,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form(max_length=200, description="any name")],
    language: Annotated[str | None, Form(pattern=r"^[a-z]{2,3}$")] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    response_format: Annotated[
        Literal["json", "text", "verbose_json", "srt", "vtt"], Form()
    ] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1, description="ignored")] = None,
    granularities: Annotated[
        list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    """The recording's text in `response_format`; `model` and `temperature` are accepted
    and ignored, and word times come with verbose_json. 415 for a file that is not audio,
    400 for an empty one."""
    words = response_format == "verbose_json"
    request = await recognize_request(file, language, prompt, word_timestamps=words)
    reply = await core.transcribe(request)
    if response_format == "text":
        return PlainTextResponse(reply.text)
    if response_format == "srt":
        return PlainTextResponse(subtitles.srt(reply.segments))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.vtt(reply.segments), media_type="text/vtt")
    if words:
        return JSONResponse(verbose(reply).model_dump())
    return JSONResponse(o.TranscriptionOut(text=reply.text).model_dump())


@router.post(
    "/audio/speech",
    summary="OpenAI: text to speech (streamed)",
    response_class=StreamingResponse,
    responses=_SPEECH_DOC,
)
async def speech(body: o.SpeechIn, request: Request, core: Core) -> StreamingResponse:
    """The input spoken, streamed as it is synthesized: pcm is s16le mono at 24 kHz (as
    OpenAI's), wav at the model's own rate, the encoded formats at their encoder's (24 kHz,
    opus 48 kHz); the rate is in X-Sample-Rate (Hz). `speed` is clamped to 0.5-2.0; an
    OpenAI voice name maps onto one of the model's voices."""
    b = bridge(request)
    check_text(body.input, b.settings, "input")
    speed = None if body.speed is None else min(max(body.speed, o.MIN_SPEED), o.MAX_SPEED)
    fmt = body.response_format
    tts_request = tts_pb2.SynthesizeRequest(
        text=body.input,
        voice=await b.voices.resolve(body.voice),
        speed=speed,
        sample_rate_hz=None if fmt == "wav" else _PCM_RATE,
    )
    speech = await start_speech(core, tts_request, fmt)
    return StreamingResponse(speech.body, media_type=speech.media_type, headers=speech.headers)


def llm_request(body: o.ChatCompletionIn, max_chars: int) -> llm_pb2.ChatRequest:
    """The body as the LLM's ChatRequest. Raises ContextLengthExceeded (400,
    context_length_exceeded) for a message over `max_chars` characters, InvalidArgument
    (400) for more than 4 stop sequences or a part that is not text."""
    messages = []
    for m in body.messages:
        text = m.text()
        if len(text) > max_chars:  # past the gateway's text limit: no model context holds it
            raise ContextLengthExceeded(
                f"a message has {len(text)} characters; the gateway "
                f"takes at most {max_chars} per message"
            )
        messages.append(llm_pb2.Message(role=ROLES[m.role], content=text))
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise InvalidArgument("stop takes at most 4 sequences")
    sampling = llm_pb2.SamplingOptions(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        max_tokens=body.max_completion_tokens or body.max_tokens,
    )
    return llm_pb2.ChatRequest(messages=messages, sampling=sampling)


_COMPLETION_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a chat.completion, or with stream=true server-sent chat.completion.chunk "
        "events ending with `data: [DONE]`",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
            "text/event-stream": {"schema": SSE_EVENT},
        },
    }
}


@router.post(
    "/chat/completions",
    summary="OpenAI: chat completion (streaming or not)",
    response_class=Response,
    responses=_COMPLETION_DOC,
)
async def chat_completions(body: o.ChatCompletionIn, request: Request, core: Core) -> Response:
    """A chat.completion, or with `stream` its chunks as server-sent events. A failure
    before the first token is an HTTP error in OpenAI's shape; after it, a last event with
    an `error` object."""
    settings = bridge(request).settings
    llm = llm_request(body, settings.max_text_chars)
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    _, stream = await prime(core.chat(llm))
    if not body.stream:
        return JSONResponse(await _complete(stream, ident, created, body.model))
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    chunks = _chunks(stream, ident, created, body.model, include_usage)
    return StreamingResponse(
        sse_guard(request.url.path, chunks, sse),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _complete(
    stream: AsyncIterator[llm_pb2.ChatResponse], ident: str, created: int, model: str
) -> dict[str, Any]:
    parts: list[str] = []
    done = llm_pb2.ChatDone()
    async for reply in stream:
        if reply.HasField("delta"):
            parts.append(reply.delta.text)
        else:
            done = reply.done
    message = o.ResponseMessage(content="".join(parts))
    choice = o.Choice(
        index=0, message=message, finish_reason=_FINISH.get(done.finish_reason, "stop")
    )  # type: ignore[arg-type]
    return o.ChatCompletion(
        id=ident,
        created=created,
        model=done.model_id or model,
        choices=[choice],
        usage=o.Usage(**o.usage(done.usage.prompt_tokens, done.usage.completion_tokens)),
    ).model_dump()


async def _chunks(
    stream: AsyncIterator[llm_pb2.ChatResponse],
    ident: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def chunk(
        delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
    ) -> bytes:
        choices = (
            []
            if usage
            else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        )
        body: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage
        return sse(body)

    yield chunk({"role": "assistant", "content": ""})
    async for reply in stream:
        if reply.HasField("delta"):
            yield chunk({"content": reply.delta.text})
        else:
            done = reply.done
            yield chunk({}, _FINISH.get(done.finish_reason, "stop"))
            if include_usage:
                yield chunk(
                    {}, usage=o.usage(done.usage.prompt_tokens, done.usage.completion_tokens)
                )
    yield sse("[DONE]")


@router.get("/models", response_model=o.ModelList, summary="OpenAI: the models behind Milo")
async def models(request: Request) -> o.ModelList:
    """One card per service (stt, translate, llm, tts), by the model id its Describe gave."""
    deps = bridge(request).core.backends.deps.values()
    cards = [
        o.ModelCard(id=d.model_id or d.name, created=STARTED, owned_by=f"milo-{d.name}")
        for d in deps
    ]
    return o.ModelList(data=cards)
