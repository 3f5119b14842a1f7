"""The `milo.gateway.v1.Conversation` servicer: Converse sessions and unary routes.

Thin: Converse validates the session config, then hands messages to a Session and streams
its outbox; the unary routes pass a request to one service and its answer (or its status
code) back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import grpc

from gateway import metrics
from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.session import Session
from gateway.turn import SessionOptions
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from services.runtime.errors import InvalidArgument, UpstreamError

log = logging.getLogger(__name__)
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$")
_RAW = (audio_pb2.AUDIO_ENCODING_PCM_S16LE, audio_pb2.AUDIO_ENCODING_PCM_F32LE)
_OUT = (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, audio_pb2.AUDIO_ENCODING_PCM_S16LE,
        audio_pb2.AUDIO_ENCODING_WAV)


def session_options(config: gw.SessionConfig, settings: GatewaySettings) -> SessionOptions:
    """The session's settings after defaults; INVALID_ARGUMENT for what cannot work."""
    user = config.user_language if config.HasField("user_language") else (
        settings.default_user_language)
    pivot = config.pivot_language if config.HasField("pivot_language") else (
        settings.default_pivot_language)
    for name, code in (("user_language", user), ("pivot_language", pivot)):
        if not _LANGUAGE.match(code):
            raise InvalidArgument(f"{name} {code!r} is not a language code such as 'mg' or 'fr'")
    fmt = config.input_format
    if config.HasField("input_format") and (
            fmt.encoding not in _RAW or not fmt.sample_rate_hz or not fmt.channels):
        raise InvalidArgument("input_format must be raw PCM (PCM_S16LE or PCM_F32LE) with "
                              "sample_rate_hz and channels set")
    if config.output_encoding not in _OUT:
        raise InvalidArgument("output_encoding must be PCM_S16LE or WAV")
    return SessionOptions(
        user_language=user, pivot_language=pivot,
        audio_out=config.output_mode != gw.OUTPUT_MODE_TEXT,
        client_brain=config.brain == gw.BRAIN_CLIENT,
        system_prompt=config.system_prompt if config.HasField("system_prompt") else None,
        sampling=config.sampling,
        voice=config.voice if config.HasField("voice") else None,
        sample_rate_hz=config.output_sample_rate_hz if config.HasField(
            "output_sample_rate_hz") else None,
        encoding=config.output_encoding, speed=config.speed if config.HasField("speed") else None,
        max_history_turns=config.max_history_turns if config.HasField(
            "max_history_turns") else settings.max_history_turns,
        barge_in=config.barge_in if config.HasField("barge_in") else True,
    )


def upstream(name: str, exc: grpc.aio.AioRpcError) -> UpstreamError:
    return UpstreamError(name, exc.code(), exc.details() or "no details")


class ConversationServicer(gateway_pb2_grpc.ConversationServicer):
    def __init__(self, settings: GatewaySettings, backends: Backends) -> None:
        self.settings, self.backends = settings, backends

    async def Describe(self, request, context):
        deps = [gw.Dependency(name=d.name, address=d.address, status=d.status,
                              model_id=d.model_id) for d in self.backends.deps.values()]
        return gw.DescribeResponse(
            version=_version(), dependencies=deps,
            default_user_language=self.settings.default_user_language,
            default_pivot_language=self.settings.default_pivot_language,
            max_audio_chunk_bytes=self.settings.max_audio_chunk_bytes)

    async def Converse(self, request_iterator, context) -> AsyncIterator[gw.ConverseResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("request") != "config":
            raise InvalidArgument("the first message of Converse must be a SessionConfig")
        options = session_options(first.config, self.settings)
        session = Session(self.settings, self.backends, first.config, options)
        log.info("session %s opened: %s -> %s, audio out %s, client brain %s", session.id,
                 options.user_language, options.pivot_language, options.audio_out,
                 options.client_brain)
        metrics.SESSIONS.inc()
        session.emit(0, session_started=gw.SessionStarted(session_id=session.id,
                                                          config=first.config))
        pump = asyncio.create_task(self._pump(session, request_iterator))
        try:
            async for event in session.outbox.drain():
                yield event
            await pump
        finally:
            pump.cancel()
            await session.close()
            metrics.SESSIONS.dec()
            log.info("session %s closed after %d turns", session.id, session._turns)

    async def _pump(self, session: Session, requests: AsyncIterator[gw.ConverseRequest]) -> None:
        try:
            async for request in requests:
                await session.handle(request)
            await session.finish()
        finally:
            session.outbox.close()

    async def Transcribe(self, request, context):
        try:
            reply = await self.backends.stt.Recognize(
                request.request, timeout=self.settings.stt_timeout_s,
                metadata=self.backends.metadata)
        except grpc.aio.AioRpcError as exc:
            raise upstream("stt", exc) from exc
        return gw.TranscribeResponse(response=reply)

    async def Translate(self, request, context):
        try:
            reply = await self.backends.translate.Translate(
                request.request, timeout=self.settings.translate_timeout_s,
                metadata=self.backends.metadata)
        except grpc.aio.AioRpcError as exc:
            raise upstream("translate", exc) from exc
        return gw.TranslateResponse(response=reply)

    async def Chat(self, request, context):
        call = self.backends.llm.Chat(request.request, timeout=self.settings.llm_timeout_s,
                                      metadata=self.backends.metadata)
        try:
            async for reply in call:
                yield gw.ChatResponse(response=reply)
        except grpc.aio.AioRpcError as exc:
            raise upstream("llm", exc) from exc
        finally:
            call.cancel()

    async def Speak(self, request, context):
        call = self.backends.tts.Synthesize(request.request, timeout=self.settings.tts_timeout_s,
                                            metadata=self.backends.metadata)
        try:
            async for reply in call:
                yield gw.SpeakResponse(response=reply)
        except grpc.aio.AioRpcError as exc:
            raise upstream("tts", exc) from exc
        finally:
            call.cancel()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milo")
    except PackageNotFoundError:
        return "dev"
