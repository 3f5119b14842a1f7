"""One server interceptor for every service: API key, admission, metrics, error mapping.

Per call, in order: check the API key (constant-time; health is exempt so container health
checks need no key), take an admission slot (methods in `exempt` skip it), run the handler,
and map what it raised to a status code. Typed MiloErrors keep their message; anything else
becomes INTERNAL with a generic message and a logged traceback.

Requests are parsed by a tolerant deserializer: grpc.aio parses a message before the handler
runs, and bytes that are not the expected protobuf message (a client's mistake) used to
answer UNKNOWN "Unexpected <class ...DecodeError>" (unary) or INTERNAL (streams). Now such a
message becomes a marker that the wrapped handler turns into INVALID_ARGUMENT "the request
could not be parsed", on every method, health and reflection included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import aclosing, asynccontextmanager
from typing import Any

import grpc

from services.runtime import metrics
from services.runtime.admission import Admission
from services.runtime.errors import (
    InvalidArgument,
    MiloError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"  # the key gRPC retry policies read
ERROR_REASON_KEY = "milo-error-reason"  # MiloError.reason, when the error has one
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def extract_api_key(metadata: Collection[tuple[str, Any]] | None) -> str | None:
    """The key from `authorization: Bearer <key>` or `x-api-key: <key>` metadata."""
    for name, value in metadata or ():
        text = value.decode() if isinstance(value, bytes) else str(value)
        if name == "x-api-key":
            return text
        if name == "authorization" and text.lower().startswith("bearer "):
            return text[7:].strip()
    return None


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """The per-call interceptor (module docstring): API key, admission, metrics, error mapping.
    `exempt` methods skip admission; until `ready` is set, calls get UNAVAILABLE."""

    def __init__(
        self,
        service: str,
        admission: Admission,
        api_key: str | None = None,
        exempt: Collection[str] = ("Describe",),
    ) -> None:
        self._service = service
        self._admission = admission
        self._api_key = api_key.encode() if api_key else None
        self._exempt = frozenset(exempt)
        self.ready = False  # set once the model is loaded; until then calls get UNAVAILABLE

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the method's handler; health and reflection are only protected from bad requests."""
        handler = await continuation(details)
        path = details.method  # type: ignore[attr-defined]
        if handler is None:
            return handler
        if path.startswith(_OPEN_PREFIXES):
            return _wrap_handler(handler, None)
        method = path.rsplit("/", 1)[-1]
        call = _Call(self, method, details.invocation_metadata)  # type: ignore[attr-defined]
        return _wrap_handler(handler, call)

    def check_key(self, metadata: Collection[tuple[str, Any]] | None) -> None:
        """Raise Unauthenticated unless the call's metadata carries the API key (compared in
        constant time); no-op when the service has no key."""
        if self._api_key is None:
            return
        given = extract_api_key(metadata)
        if given is None or not hmac.compare_digest(given.encode(), self._api_key):
            raise Unauthenticated(
                "missing or wrong API key: send 'authorization: Bearer <key>' or 'x-api-key'"
            )


class _Call:
    """What the interceptor does around one call, for every handler shape."""

    def __init__(self, owner: ServiceInterceptor, method: str, metadata: Any) -> None:
        self.owner, self.method, self.metadata = owner, method, metadata

    @asynccontextmanager
    async def guard(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        service, start = self.owner._service, time.monotonic()
        code = grpc.StatusCode.OK
        metrics.IN_FLIGHT.labels(service, self.method).inc()
        try:
            self.owner.check_key(self.metadata)
            if not self.owner.ready:
                raise Unavailable(f"{service} is still loading its model; retry shortly")
            async with self._admitted():
                yield
        except MiloError as exc:
            code = exc.code
            await _abort(context, exc)
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s/%s failed", service, self.method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        finally:
            self._record(code, time.monotonic() - start)

    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        if self.method in self.owner._exempt:
            yield
            return
        async with self.owner._admission.slot() as waited:
            metrics.QUEUE_WAIT.labels(self.owner._service).observe(waited)
            yield

    def _record(self, code: grpc.StatusCode, seconds: float) -> None:
        service = self.owner._service
        metrics.IN_FLIGHT.labels(service, self.method).dec()
        metrics.REQUESTS.labels(service, self.method, code.name).inc()
        metrics.LATENCY.labels(service, self.method, code.name).observe(seconds)
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            log.info("%s/%s -> %s after %.3fs", service, self.method, code.name, seconds)


async def _abort(context: grpc.aio.ServicerContext, exc: MiloError) -> None:
    trailing: tuple[tuple[str, str], ...] = ()
    if exc.retry_after_ms is not None:
        trailing = ((RETRY_PUSHBACK_KEY, str(exc.retry_after_ms)),)
    if exc.reason:
        trailing = (*trailing, (ERROR_REASON_KEY, exc.reason))
    await context.abort(exc.code, exc.message, trailing)


class _Undecodable:
    """What the tolerant deserializer gives for bytes that are not the expected message."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        return InvalidArgument(
            f"the request could not be parsed: it is not a valid {self.type_name} message "
            "(protobuf wire format; text fields must be UTF-8)"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, but bytes it cannot parse become an _Undecodable instead of raising
    inside gRPC (which answers UNKNOWN or INTERNAL with the exception's class name)."""
    if deserializer is None:
        return None
    message = getattr(deserializer, "__self__", None)
    descriptor = getattr(message, "DESCRIPTOR", None)
    name = descriptor.full_name if descriptor is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # protobuf's DecodeError, or anything a custom parser raises
            return _Undecodable(name)

    return parse


def _parsed(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise request.error()
    return request


async def _parsed_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _parsed(request)


@asynccontextmanager
async def _open_guard(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Health and reflection: no key, no admission; only an unparsable request is mapped."""
    try:
        yield
    except InvalidArgument as exc:
        await _abort(context, exc)


def _wrap_handler(handler: grpc.RpcMethodHandler, call: _Call | None) -> grpc.RpcMethodHandler:
    serializers = (_tolerant(handler.request_deserializer), handler.response_serializer)
    guard = call.guard if call is not None else _open_guard
    streaming_in = handler.request_streaming

    def checked(request: Any) -> Any:
        return _parsed_stream(request) if streaming_in else _parsed(request)

    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary_out(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with guard(context):
                return await inner(checked(request), context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_out, *serializers)
        return grpc.stream_unary_rpc_method_handler(unary_out, *serializers)

    inner_stream = handler.unary_stream or handler.stream_stream
    make = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else (grpc.stream_stream_rpc_method_handler)
    )
    if not inspect.isasyncgenfunction(inner_stream):  # writes with context.write (health Watch)

        async def write_out(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with guard(context):
                await inner_stream(checked(request), context)

        return make(write_out, *serializers)

    async def stream_out(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with guard(context):
            handler = inner_stream(checked(request), context)
            # A client cancel can land while gRPC is sending, outside the handler, leaving it
            # suspended (and, say, an LLM generating) until the garbage collector finds it.
            context.add_done_callback(lambda _ctx: _close_soon(handler))
            async with aclosing(handler) as stream:
                async for item in stream:  # aclosing: the cleanup runs on cancel at once
                    yield item

    return make(stream_out, *serializers)


_CLOSING: set[asyncio.Task[None]] = set()


def _close_soon(handler: Any) -> None:
    """The call is over: close the handler's generator now, so its cleanup runs at once."""

    async def close() -> None:
        with contextlib.suppress(RuntimeError):  # still running: the cancel reached it
            await handler.aclose()

    task = asyncio.ensure_future(close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
