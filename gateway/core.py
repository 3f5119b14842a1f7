"""What the gateway does, once, for every front: the gRPC servicer and the HTTP bridge are
thin adapters over `GatewayCore`.

Each method takes and returns the services' own protobuf types and raises
services.runtime.errors types (UpstreamError keeps a dependency's name, status code and
retry hint), so each front maps one set of errors to its own shapes: gRPC status codes, or
HTTP statuses and JSON. Every call to a service goes through the gateway's `Upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from gateway import metrics
from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.session import Session
from gateway.turn import SessionOptions
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from milo.translate.v1 import translate_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)
_DRAINING = "this gateway is shutting down: connect again and another replica will answer"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$")
_RAW = (audio_pb2.AUDIO_ENCODING_PCM_S16LE, audio_pb2.AUDIO_ENCODING_PCM_F32LE)
_OUT = (
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED,
    audio_pb2.AUDIO_ENCODING_PCM_S16LE,
    audio_pb2.AUDIO_ENCODING_WAV,
)


def session_options(config: gw.SessionConfig, settings: GatewaySettings) -> SessionOptions:
    """The session's settings after defaults; INVALID_ARGUMENT for what cannot work."""
    user = (
        config.user_language
        if config.HasField("user_language")
        else (settings.default_user_language)
    )
    pivot = (
        config.pivot_language
        if config.HasField("pivot_language")
        else (settings.default_pivot_language)
    )
    for name, code in (("user_language", user), ("pivot_language", pivot)):
        if not _LANGUAGE.match(code):
            raise InvalidArgument(f"{name} {code!r} is not a language code such as 'mg' or 'fr'")
    fmt = config.input_format
    if config.HasField("input_format") and (
        fmt.encoding not in _RAW or not fmt.sample_rate_hz or not fmt.channels
    ):
        raise InvalidArgument(
            "input_format must be raw PCM (PCM_S16LE or PCM_F32LE) with "
            "sample_rate_hz and channels set"
        )
    if config.output_encoding not in _OUT:
        raise InvalidArgument("output_encoding must be PCM_S16LE or WAV")
    return SessionOptions(
        user_language=user,
        pivot_language=pivot,
        audio_out=config.output_mode != gw.OUTPUT_MODE_TEXT,
        client_brain=config.brain == gw.BRAIN_CLIENT,
        system_prompt=config.system_prompt if config.HasField("system_prompt") else None,
        sampling=config.sampling,
        voice=config.voice if config.HasField("voice") else None,
        sample_rate_hz=config.output_sample_rate_hz
        if config.HasField("output_sample_rate_hz")
        else None,
        encoding=config.output_encoding,
        speed=config.speed if config.HasField("speed") else None,
        max_history_turns=config.max_history_turns
        if config.HasField("max_history_turns")
        else settings.max_history_turns,
        barge_in=config.barge_in if config.HasField("barge_in") else True,
    )


class GatewayCore:
    """Sessions and the unary routes over the gateway's Backends."""

    def __init__(self, settings: GatewaySettings, backends: Backends) -> None:
        self.settings, self.backends = settings, backends
        self.upstream = backends.upstream
        self.draining = False
        self._sessions: set[Session] = set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()

    def describe(self) -> gw.DescribeResponse:
        """The gateway's version, session defaults and each dependency's address, health
        status and model id as last seen (no call is made)."""
        deps = [
            gw.Dependency(name=d.name, address=d.address, status=d.status, model_id=d.model_id)
            for d in self.backends.deps.values()
        ]
        return gw.DescribeResponse(
            version=version(),
            dependencies=deps,
            default_user_language=self.settings.default_user_language,
            default_pivot_language=self.settings.default_pivot_language,
            max_audio_chunk_bytes=self.settings.max_audio_chunk_bytes,
        )

    # ---- conversations ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def conversation(
        self, requests: AsyncIterator[gw.ConverseRequest]
    ) -> AsyncIterator[AsyncIterator[gw.ConverseResponse]]:
        """One session, for the block's duration: `async with core.conversation(requests)
        as events: async for event in events: ...`. The first request must be a
        SessionConfig. Events end when the requests do (and the last turn is over).
        Leaving the block by any path, or the end of the task that entered it, ends the
        session at once: its turn, and so its LLM and TTS calls, are cancelled."""
        if self.draining:
            raise Unavailable(_DRAINING)
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("request") != "config":
            raise InvalidArgument("the first message of Converse must be a SessionConfig")
        options = session_options(first.config, self.settings)
        session = Session(self.settings, self.upstream, first.config, options)
        log.info(
            "session %s opened: %s -> %s, audio out %s, client brain %s",
            session.id,
            options.user_language,
            options.pivot_language,
            options.audio_out,
            options.client_brain,
        )
        metrics.SESSIONS.inc()
        session.emit(
            0, session_started=gw.SessionStarted(session_id=session.id, config=first.config)
        )
        session.bind(asyncio.current_task())
        session.run(requests)
        self._opened(session)
        try:
            async with contextlib.aclosing(session.outbox.drain()) as events:
                yield events
            await session.wait_read()
        finally:
            self._closed(session)
            await session.close()
            metrics.SESSIONS.dec()
            log.info("session %s closed after %d turns", session.id, session.turns)

    async def converse(
        self, requests: AsyncIterator[gw.ConverseRequest]
    ) -> AsyncIterator[gw.ConverseResponse]:
        """`conversation` as one stream of events (iterate it with contextlib.aclosing)."""
        async with self.conversation(requests) as events:
            async for event in events:
                yield event

    def _opened(self, session: Session) -> None:
        self._sessions.add(session)
        self._no_sessions.clear()
        if self.draining:  # a stream that opened as the drain began
            session.go_away(_DRAINING, 0)

    def _closed(self, session: Session) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._no_sessions.set()

    async def drain(self, grace: float) -> None:
        """Shutting down: refuse new conversations, tell each open one to reconnect (the
        in-band `reconnect` event), let it finish its turns until its client half-closes,
        and end those still open after `grace` seconds."""
        self.draining = True
        log.info(
            "draining: %d conversations told to reconnect (grace %.1fs)", len(self._sessions), grace
        )
        for session in list(self._sessions):
            session.go_away(_DRAINING, int(grace * 1000))
        if not self._sessions:
            return
        try:
            async with asyncio.timeout(grace):
                await self._no_sessions.wait()
        except TimeoutError:
            log.warning("drain grace over: ending %d conversations still open", len(self._sessions))
            for session in list(self._sessions):
                session.cut()
            with contextlib.suppress(TimeoutError):  # they flush their last events
                async with asyncio.timeout(1.0):
                    await self._no_sessions.wait()

    # ---- one service each ---------------------------------------------------------------

    async def transcribe(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        """STT's unary Recognize, within `stt_timeout_s`; raises UpstreamError."""
        reply: stt_pb2.RecognizeResponse = await self.upstream.unary("stt", "Recognize", request)
        return reply

    async def translate(
        self, request: translate_pb2.TranslateRequest
    ) -> translate_pb2.TranslateResponse:
        """The translate service's Translate, within `translate_timeout_s`; raises
        UpstreamError."""
        reply: translate_pb2.TranslateResponse = await self.upstream.unary(
            "translate", "Translate", request
        )
        return reply

    def chat(self, request: llm_pb2.ChatRequest) -> AsyncGenerator[llm_pb2.ChatResponse, None]:
        """The LLM's stream; closing the iterator cancels generation upstream."""
        return self._relay("llm", "Chat", request)

    def speak(
        self, request: tts_pb2.SynthesizeRequest
    ) -> AsyncGenerator[tts_pb2.SynthesizeResponse, None]:
        """The TTS stream; closing the iterator stops synthesis upstream."""
        return self._relay("tts", "Synthesize", request)

    async def _relay(self, service: str, method: str, request: Any) -> AsyncGenerator[Any, None]:
        async with self.upstream.stream(service, method, request) as replies:
            async for reply in replies:
                yield reply


def version() -> str:
    """The installed `milo` package's version, or "dev" when it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("milo")
    except PackageNotFoundError:
        return "dev"
