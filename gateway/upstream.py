"""Every call from the gateway to a service goes through `Upstream`: connecting, deadlines,
the API key, cancellation and error mapping live here and nowhere else.

- Channels: one grpc.aio channel per service for the gateway's lifetime, made by
  `open_channel` (the one place for channel options: keepalive, fast reconnect at most
  2 s apart, message sizes, and a retry policy for the idempotent unary methods, which
  retries UNAVAILABLE, RESOURCE_EXHAUSTED and a CANCELLED sent by a replica that is
  shutting down, with backoff, honouring the server's grpc-retry-pushback-ms). Streaming
  calls are never retried: a half-spoken reply cannot be replayed. Each address may name
  several replicas (a DNS name, `dns:///headless-service:port`, or a list of IP
  addresses): calls are spread with round_robin and a replica that reports NOT_SERVING
  gets no new call (gateway/balancing.py).
- Connecting: before a call, a channel that is not READY gets a short grace to
  (re)connect, so a service that has just restarted is reached, while one that is down
  still fails fast (UNAVAILABLE) instead of holding the caller to its deadline.
- Deadlines: each method's deadline comes from the settings (`deadlines`); a stream can
  also bound the wait for its first reply (the LLM's first token).
- Errors: every failure is one type, services.runtime.errors.UpstreamError, naming the
  service, its status code, its message and its retry hint.
- Cancellation: a stream is an async context manager; leaving it by any path (end, error,
  the caller's task cancelled) cancels the call upstream at once, so the LLM stops
  generating and TTS stops synthesizing; and a call never outlives the task that opened
  it, even inside a generator its consumer dropped without closing. Waits are bounded
  with `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11, wait_for swallows a
  cancellation that lands as the awaited read completes (CPython gh-86296), and a
  barged-in turn then read the LLM's reply to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from gateway.balancing import balancing_config, channel_target
from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.errors import UpstreamError
from services.runtime.interceptors import ERROR_REASON_KEY, RETRY_PUSHBACK_KEY

if TYPE_CHECKING:
    from gateway.config import GatewaySettings

__all__ = ["ROLES", "SERVICE_NAMES", "Replies", "Upstream", "UpstreamError", "open_channel"]

_PROTOS = {
    "stt": (stt_pb2, "Stt", stt_pb2_grpc.SttStub),
    "translate": (translate_pb2, "Translator", translate_pb2_grpc.TranslatorStub),
    "llm": (llm_pb2, "Llm", llm_pb2_grpc.LlmStub),
    "tts": (tts_pb2, "Tts", tts_pb2_grpc.TtsStub),
}
NAMES = tuple(_PROTOS)
# Each service's full proto name, e.g. "milo.translate.v1.Translator".
SERVICE_NAMES = {
    name: module.DESCRIPTOR.services_by_name[service].full_name
    for name, (module, service, _) in _PROTOS.items()
}
DESCRIBE_REQUESTS = {name: module.DescribeRequest for name, (module, _, _) in _PROTOS.items()}
_IDEMPOTENT = {
    "stt": ["Recognize", "Describe"],
    "translate": ["Translate", "Describe"],
    "llm": ["Describe"],
    "tts": ["Describe"],
}
# Chat roles by their names on the HTTP and OpenAI routes ("developer" is OpenAI's newer
# name for the system message).
ROLES = {
    "system": llm_pb2.ROLE_SYSTEM,
    "developer": llm_pb2.ROLE_SYSTEM,
    "user": llm_pb2.ROLE_USER,
    "assistant": llm_pb2.ROLE_ASSISTANT,
}
DESCRIBE_TIMEOUT_S = 5.0


def _service_config(name: str, retries: int) -> str:
    methods = [{"service": SERVICE_NAMES[name], "method": m} for m in _IDEMPOTENT[name]]
    policy = {
        "maxAttempts": retries + 1,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        # CANCELLED too: a replica shutting down cancels the calls it had received but not
        # yet handed to a handler (gRPC core, grpc/grpc#41785) instead of refusing them with
        # UNAVAILABLE. A call the gateway cancels itself is never retried.
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"],
    }
    config = balancing_config()
    if retries:
        config["methodConfig"] = [{"name": methods, "retryPolicy": policy}]
    return json.dumps(config)


def channel_options(name: str, retries: int) -> list[tuple[str, object]]:
    """The options of the channel to service `name` ("stt", "translate", "llm", "tts")."""
    return [
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", _service_config(name, retries)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


def open_channel(name: str, address: str, retries: int) -> grpc.aio.Channel:
    """The gateway's long-lived channel to service `name` at `address` (host:port, or
    replicas: see gateway/balancing.py)."""
    return grpc.aio.insecure_channel(
        channel_target(address), options=channel_options(name, retries)
    )


def deadlines(settings: GatewaySettings) -> dict[tuple[str, str], float | None]:
    """Each method's deadline in seconds (None: none, a session-long stream)."""
    return {
        ("stt", "Recognize"): settings.stt_timeout_s,
        ("stt", "StreamingRecognize"): None,
        ("translate", "Translate"): settings.translate_timeout_s,
        ("llm", "Chat"): settings.llm_timeout_s,
        ("tts", "Synthesize"): settings.tts_timeout_s,
        **{(name, "Describe"): DESCRIBE_TIMEOUT_S for name in NAMES},
    }


def upstream_error(service: str, exc: grpc.aio.AioRpcError) -> UpstreamError:
    """A failed call as the gateway's one error type, with the server's retry hint
    (grpc-retry-pushback-ms) and reason (milo-error-reason) when it sent them."""
    pushback = _trailer(exc, RETRY_PUSHBACK_KEY)
    return UpstreamError(
        service,
        exc.code(),
        exc.details() or "no details",
        retry_after_ms=int(pushback) if pushback and pushback.isdigit() else None,
        reason=_trailer(exc, ERROR_REASON_KEY),
    )


def _trailer(exc: grpc.aio.AioRpcError, key: str) -> str | None:
    for name, value in exc.trailing_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class Replies:
    """The replies of one streaming call, as an async iterator; errors are UpstreamError.
    Not a generator, so there is nothing to close: the `Upstream.stream` block that made it
    cancels the call."""

    def __init__(self, service: str, call: Any, first_read_s: float | None) -> None:
        self.service, self._call, self._wait = service, call, first_read_s

    def __aiter__(self) -> Replies:
        return self

    async def __anext__(self) -> Any:
        wait, self._wait = self._wait, None
        try:
            async with asyncio.timeout(wait):
                reply = await self._read()
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(self.service, exc) from exc
        except TimeoutError as exc:
            raise UpstreamError(
                self.service, grpc.StatusCode.DEADLINE_EXCEEDED, f"no reply within {wait:g}s"
            ) from exc
        if reply is grpc.aio.EOF:
            raise StopAsyncIteration
        return reply

    async def _read(self) -> Any:
        """The next reply. A read is never abandoned in flight: when the reader is cancelled
        (a barge-in, a timeout), the call is cancelled first and the read, shielded, ends
        on its own with the call. grpc.aio frees a read's native resources only when an
        awaiter takes its result; a read whose awaiting task was cancelled keeps them for
        good, and the message it received holds on to its 64 KiB network read buffer
        (grpc/grpc#43360): under steady barge-ins the gateway's heap grew 6.6 MiB in 100 s."""
        read = asyncio.ensure_future(self._call.read())
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            self._call.cancel()
            read.add_done_callback(_retrieve)
            raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take a finished read's outcome, so that its error is not logged as never retrieved."""
    if not task.cancelled():
        task.exception()


class Upstream:
    """The channels to the four services and every call made on them."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        api_key: str | None = None,
        retries: int = 0,
        timeouts: Mapping[tuple[str, str], float | None] | None = None,
    ) -> None:
        self.addresses = dict(addresses)
        self.channels = {
            name: open_channel(name, address, retries) for name, address in self.addresses.items()
        }
        self._stubs = {name: _PROTOS[name][2](channel) for name, channel in self.channels.items()}
        self.metadata: Sequence[tuple[str, str]] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.timeouts = dict(timeouts or {})

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Upstream:
        """The channels to the four `*_address` settings, with their backend key, unary
        retries and per-method deadlines."""
        s = settings
        key = s.backend_api_key.get_secret_value() if s.backend_api_key else None
        addresses = {
            "stt": s.stt_address,
            "translate": s.translate_address,
            "llm": s.llm_address,
            "tts": s.tts_address,
        }
        return cls(addresses, key, s.unary_retries, deadlines(s))

    async def connected(self, service: str, grace: float = 2.5) -> None:
        """Give a channel that is not READY `grace` seconds to (re)connect; never raises:
        a call on a channel still down then fails fast with UNAVAILABLE."""
        channel = self.channels[service]
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await channel.channel_ready()

    def _method(self, service: str, method: str) -> Any:
        return getattr(self._stubs[service], method)

    async def unary(self, service: str, method: str, request: Any) -> Any:
        """One unary call, e.g. unary("translate", "Translate", request), within the
        method's deadline; raises UpstreamError."""
        await self.connected(service)
        deadline = self.timeouts.get((service, method))
        try:
            return await self._method(service, method)(
                request, timeout=deadline, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(service, exc) from exc

    @contextlib.asynccontextmanager
    async def stream(
        self, service: str, method: str, request: Any, first_read_s: float | None = None
    ) -> AsyncIterator[Replies]:
        """A server- or bidi-streaming call (`request` is a message or an async iterator of
        them) for the block's duration: `async with up.stream("llm", "Chat", r) as replies:
        async for reply in replies: ...`. Leaving the block cancels the call upstream; so
        does the end of the task that opened it, should the block be left suspended (a
        generator around it that its consumer dropped without closing)."""
        await self.connected(service)
        call = self._method(service, method)(
            request, timeout=self.timeouts.get((service, method)), metadata=self.metadata
        )
        task = asyncio.current_task()

        def opener_done(_task: asyncio.Task[Any]) -> None:
            call.cancel()

        if task is not None:
            task.add_done_callback(opener_done)
        try:
            yield Replies(service, call, first_read_s)
        finally:
            call.cancel()
            if task is not None:
                task.remove_done_callback(opener_done)

    async def close(self) -> None:
        """Close every channel; calls still open on them end with CANCELLED."""
        for channel in self.channels.values():
            await channel.close()
