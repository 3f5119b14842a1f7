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
"""

from __future__ import annotations

import asyncio
import json
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
_RETRY = {"methodConfig": [{
    "name": [{"service": "milo.gateway.v1.Conversation", "method": m} for m in _UNARY],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]}


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
    """One channel to the gateway at `address`; `api_key` is sent as a bearer token;
    `timeout` (seconds) bounds each unary call; `connect_attempts` tries to reach it."""

    def __init__(self, address: str = "127.0.0.1:50050", api_key: str | None = None,
                 timeout: float = 60.0, connect_attempts: int = 5) -> None:
        self.timeout, self.connect_attempts = timeout, connect_attempts
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.channel = grpc.aio.insecure_channel(address, options=[
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(_RETRY)),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ])
        self.stub = gateway_pb2_grpc.ConversationStub(self.channel)

    async def __aenter__(self) -> MiloClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def converse(self, inputs: AsyncIterable[bytes | str | Reply | int],
                       config: gw.SessionConfig | None = None,
                       timeout: float | None = None,  # noqa: ASYNC109 (the gRPC deadline)
                       ) -> AsyncIterator[Event]:
        """One session: yields events until the inputs end and the last turn is over."""
        await self._wait_ready()

        async def requests() -> AsyncIterator[gw.ConverseRequest]:
            yield gw.ConverseRequest(config=config or gw.SessionConfig())
            async for item in inputs:
                yield _request(item)

        call = self.stub.Converse(requests(), metadata=self.metadata, timeout=timeout)
        try:
            async for reply in call:
                kind = reply.WhichOneof("event")
                yield Event(reply.turn_id, kind or "", getattr(reply, kind) if kind else None)
        finally:
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
        return await self.stub.Describe(gw.DescribeRequest(), timeout=self.timeout,
                                        metadata=self.metadata)

    async def transcribe(self, audio: bytes, language: str | None = None,
                         fmt: audio_pb2.AudioFormat | None = None) -> stt_pb2.RecognizeResponse:
        """Transcribe one clip (`fmt`: its format; unset: a container such as WAV)."""
        request = stt_pb2.RecognizeRequest(
            audio=audio, format=fmt, config=stt_pb2.RecognitionConfig(language=language))
        reply = await self.stub.Transcribe(gw.TranscribeRequest(request=request),
                                           timeout=self.timeout, metadata=self.metadata)
        return reply.response

    async def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One translation per text, in order (ISO 639-1 language codes)."""
        request = translate_pb2.TranslateRequest(
            texts=list(texts), source_language=source, target_language=target)
        reply = await self.stub.Translate(gw.TranslateRequest(request=request),
                                          timeout=self.timeout, metadata=self.metadata)
        return [t.text for t in reply.response.translations]

    async def chat(self, messages: Sequence[tuple[str, str]],
                   sampling: llm_pb2.SamplingOptions | None = None) -> AsyncIterator[str]:
        """Stream the reply's text deltas; messages are (role, content) pairs."""
        roles = {"system": llm_pb2.ROLE_SYSTEM, "user": llm_pb2.ROLE_USER,
                 "assistant": llm_pb2.ROLE_ASSISTANT}
        request = llm_pb2.ChatRequest(
            messages=[llm_pb2.Message(role=roles[r], content=c) for r, c in messages],
            sampling=sampling)
        async for reply in self.stub.Chat(gw.ChatRequest(request=request),
                                          timeout=self.timeout, metadata=self.metadata):
            if reply.response.HasField("delta"):
                yield reply.response.delta.text

    async def speak(self, text: str, **options: Any) -> AsyncIterator[bytes]:
        """Stream PCM s16le audio for the text (options: voice, speed, sample_rate_hz)."""
        request = tts_pb2.SynthesizeRequest(text=text, **options)
        async for reply in self.stub.Speak(gw.SpeakRequest(request=request),
                                           timeout=self.timeout, metadata=self.metadata):
            if reply.response.HasField("audio"):
                yield reply.response.audio.data
