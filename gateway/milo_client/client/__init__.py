"""`milo.client`: the Python client for Milo's gateway, for the existing bot. It needs only
grpcio, protobuf and the wire stubs (`milo.*`): `pip install ./gateway/milo_client` (the
`milo-client` distribution) installs exactly that.

    from milo.client import MiloClient, Reply

    async with MiloClient("127.0.0.1:50050") as milo:
        async for event in milo.converse(microphone_chunks(), SessionConfig(...)):
            if event.kind == "transcript" and event.payload.is_final: ...
            elif event.kind == "audio": play(event.payload.chunk.data)

`converse()` takes an async iterator of inputs: `bytes` (audio in the session's input
format), `str` (user text), `Reply("...")` (the bot's own answer, with BRAIN_CLIENT) or a
`gateway_pb2.Control.Action` value; it yields `Event(turn_id, kind, payload)` where `kind`
names the event (transcript, translation, llm_delta, reply_sentence, audio, latency, error,
barged_in, turn_ended, ...) and `payload` is its typed protobuf message. If the gateway
cannot be reached when the conversation opens, it retries with backoff; a stream that breaks
mid-way raises `grpc.aio.AioRpcError` (a half-spoken turn cannot be replayed). The unary
helpers retry UNAVAILABLE with backoff (a gRPC retry policy on the channel).

Several gateways: `address` may be a list of IP `host:port`, or a DNS name resolving to
every replica (`dns:///milo-gateway:50050`); calls are spread over the replicas that say
SERVING. When a gateway shuts down, it sends a `reconnect` event: `converse()` yields it,
stops sending on that stream (inputs wait), lets the turns in flight finish, then opens a
new stream with the same config on another replica and goes on with the inputs, so the
caller's loop sees one conversation (its LLM history starts afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from milo.translate.v1 import translate_pb2
from milo.tts.v1 import tts_pb2

__all__ = ["Event", "MiloClient", "Reply"]

_UNARY = ("Describe", "Transcribe", "Translate")
_SERVICE_CONFIG = {
    # Spread calls over every replica the address names; skip one that is NOT_SERVING.
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [
        {
            "name": [{"service": "milo.gateway.v1.Conversation", "method": m} for m in _UNARY],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def _target(address: str | Sequence[str]) -> str:
    """A gRPC target: one `host:port` or `dns:///name:port` as is; a list of IP
    `host:port` (a sequence or comma-separated) as an `ipv4:`/`ipv6:` target."""
    parts = [address] if isinstance(address, str) else list(address)
    parts = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("no gateway address given")
    v6 = parts[0].startswith("[")
    return ("ipv6:" if v6 else "ipv4:") + ",".join(parts)


@dataclass(frozen=True)
class Event:
    """One event of a conversation: its turn, its kind (the oneof's name), its message."""

    turn_id: int
    kind: str
    payload: Any


@dataclass(frozen=True)
class Reply:
    """The bot's own reply text (BRAIN_CLIENT sessions), in the pivot language."""

    text: str


def _request(item: bytes | str | Reply | int) -> gw.ConverseRequest:
    if isinstance(item, bytes):
        return gw.ConverseRequest(audio=item)
    if isinstance(item, str):
        return gw.ConverseRequest(text=gw.UserText(text=item))
    if isinstance(item, Reply):
        return gw.ConverseRequest(reply=gw.ReplyText(text=item.text))
    return gw.ConverseRequest(control=gw.Control(action=item))  # type: ignore[arg-type]


class MiloClient:
    """One channel to the gateway(s) at `address`; `api_key` is sent as a bearer token;
    `timeout` (seconds) bounds each unary call; `connect_attempts` tries to reach it."""

    def __init__(
        self,
        address: str | Sequence[str] = "127.0.0.1:50050",
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_attempts: int = 5,
    ) -> None:
        self.timeout, self.connect_attempts = timeout, connect_attempts
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.channel = grpc.aio.insecure_channel(
            _target(address),
            options=[
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.enable_retries", 1),
                ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        self.stub = gateway_pb2_grpc.ConversationStub(self.channel)

    async def __aenter__(self) -> MiloClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def converse(
        self,
        inputs: AsyncIterable[bytes | str | Reply | int],
        config: gw.SessionConfig | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the gRPC deadline)
    ) -> AsyncIterator[Event]:
        """One session: yields events until the inputs end and the last turn is over.
        On a `reconnect` event (yielded too) it goes on over a new stream: see above."""
        pending = _Inputs(inputs)
        refused = 0
        try:
            while True:
                await self._wait_ready()
                call = self.stub.Converse(metadata=self.metadata, timeout=timeout)
                reconnect = opened = False
                try:
                    async for event in self._one_stream(call, config, pending):
                        opened = True
                        reconnect = reconnect or event.kind == "reconnect"
                        yield event
                except grpc.aio.AioRpcError as exc:
                    # A gateway that drains refuses new streams: try another (with backoff).
                    refused += 1
                    if (
                        opened
                        or exc.code() != grpc.StatusCode.UNAVAILABLE
                        or refused >= self.connect_attempts
                    ):
                        raise
                    await asyncio.sleep(min(0.2 * 2**refused, 2.0))
                    continue
                if not reconnect or pending.finished:
                    return
        finally:
            pending.close()

    async def _one_stream(
        self, call: Any, config: gw.SessionConfig | None, pending: _Inputs
    ) -> AsyncIterator[Event]:
        """Events of one Converse stream, while a task writes the inputs to it; after a
        `reconnect` event the writer stops (unsent inputs wait) and the stream half-closes."""
        stop = asyncio.Event()
        writer = asyncio.create_task(
            pending.write(call, gw.ConverseRequest(config=config or gw.SessionConfig()), stop)
        )
        try:
            async for reply in call:
                kind = reply.WhichOneof("event")
                if kind == "reconnect":
                    stop.set()
                yield Event(reply.turn_id, kind or "", getattr(reply, kind) if kind else None)
            stop.set()  # the stream is over: what the writer still holds waits
            await writer
        finally:
            writer.cancel()
            call.cancel()

    async def _wait_ready(self) -> None:
        """Connect, retrying with backoff if the gateway is not up yet."""
        delay = 0.2
        for attempt in range(self.connect_attempts):
            try:
                await asyncio.wait_for(self.channel.channel_ready(), delay * 5)
                return
            except TimeoutError:
                if attempt == self.connect_attempts - 1:
                    raise ConnectionError("the Milo gateway is unreachable") from None
                delay = min(delay * 2, 2.0)

    async def describe(self) -> gw.DescribeResponse:
        """The gateway's Describe: its services, languages and limits."""
        return await self.stub.Describe(
            gw.DescribeRequest(), timeout=self.timeout, metadata=self.metadata
        )

    async def transcribe(
        self, audio: bytes, language: str | None = None, fmt: audio_pb2.AudioFormat | None = None
    ) -> stt_pb2.RecognizeResponse:
        """The transcript of one recording. `fmt` unset: the container (WAV, FLAC, Ogg, MP3,
        WebM) is detected from the data; raw PCM must give its rate and channels. `language`
        unset: the server's. Raises grpc.aio.AioRpcError (INVALID_ARGUMENT for bad audio)."""
        request = stt_pb2.RecognizeRequest(
            audio=audio, format=fmt, config=stt_pb2.RecognitionConfig(language=language)
        )
        reply = await self.stub.Transcribe(
            gw.TranscribeRequest(request=request), timeout=self.timeout, metadata=self.metadata
        )
        return reply.response

    async def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """`texts` translated from `source` to `target` (ISO 639-1 such as "mg", or the
        model's code such as "plt_Latn"), in order; raises grpc.aio.AioRpcError."""
        request = translate_pb2.TranslateRequest(
            texts=list(texts), source_language=source, target_language=target
        )
        reply = await self.stub.Translate(
            gw.TranslateRequest(request=request), timeout=self.timeout, metadata=self.metadata
        )
        return [t.text for t in reply.response.translations]

    async def chat(
        self, messages: Sequence[tuple[str, str]], sampling: llm_pb2.SamplingOptions | None = None
    ) -> AsyncIterator[str]:
        """Stream the reply's text deltas; messages are (role, content) pairs."""
        roles = {
            "system": llm_pb2.ROLE_SYSTEM,
            "user": llm_pb2.ROLE_USER,
            "assistant": llm_pb2.ROLE_ASSISTANT,
        }
        request = llm_pb2.ChatRequest(
            messages=[llm_pb2.Message(role=roles[r], content=c) for r, c in messages],
            sampling=sampling,
        )
        async for reply in self.stub.Chat(
            gw.ChatRequest(request=request), timeout=self.timeout, metadata=self.metadata
        ):
            if reply.response.HasField("delta"):
                yield reply.response.delta.text

    async def speak(self, text: str, **options: Any) -> AsyncIterator[bytes]:
        """Stream PCM s16le audio for the text (options: voice, speed, sample_rate_hz)."""
        request = tts_pb2.SynthesizeRequest(text=text, **options)
        async for reply in self.stub.Speak(
            gw.SpeakRequest(request=request), timeout=self.timeout, metadata=self.metadata
        ):
            if reply.response.HasField("audio"):
                yield reply.response.audio.data


_END = object()
# What writing to a stream that has already ended raises.
_ENDED = (grpc.aio.UsageError, grpc.aio.AioRpcError, asyncio.InvalidStateError)


class _Inputs:
    """The caller's inputs, read ahead into a buffer so that a stream that must end (the
    gateway's `reconnect`) leaves what it has not sent for the next stream."""

    def __init__(self, source: AsyncIterable[bytes | str | Reply | int]) -> None:
        self._buffer: deque[object] = deque()
        self._more = asyncio.Event()
        self.finished = False  # the source is exhausted and every input was sent
        self._reader = asyncio.create_task(self._read(source))

    async def _read(self, source: AsyncIterable[bytes | str | Reply | int]) -> None:
        try:
            async for item in source:
                self._buffer.append(item)
                self._more.set()
        finally:
            self._buffer.append(_END)
            self._more.set()

    async def write(self, call: Any, first: gw.ConverseRequest, stop: asyncio.Event) -> None:
        """Send `first`, then the inputs, until they end (half-close) or `stop` is set."""
        await call.write(first)
        while not stop.is_set():
            if not self._buffer:
                self._more.clear()
                await _first_of(self._more, stop)
                continue
            item = self._buffer.popleft()
            if item is _END:
                self.finished = True
                break
            try:
                await call.write(_request(item))  # type: ignore[arg-type]
            except _ENDED:
                self._buffer.appendleft(item)  # the stream ended first: keep it for the next
                return
        with contextlib.suppress(*_ENDED):
            await call.done_writing()

    def close(self) -> None:
        self._reader.cancel()


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
