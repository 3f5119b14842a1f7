"""One server interceptor for every service: API key, admission, metrics, error mapping.

Per call, in order: check the API key (constant-time; health is exempt so container health
checks need no key), take an admission slot (methods in `exempt` skip it), run the handler,
and map what it raised to a status code. Typed MiloErrors keep their message; anything else
becomes INTERNAL with a generic message and a logged traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import aclosing, asynccontextmanager
from typing import Any

import grpc

from services.runtime import metrics
from services.runtime.admission import Admission
from services.runtime.errors import MiloError, ResourceExhausted, Unauthenticated, Unavailable

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
        handler = await continuation(details)
        path = details.method  # type: ignore[attr-defined]
        if handler is None or path.startswith(_OPEN_PREFIXES):
            return handler
        method = path.rsplit("/", 1)[-1]
        call = _Call(self, method, details.invocation_metadata)  # type: ignore[attr-defined]
        return _wrap_handler(handler, call)

    def check_key(self, metadata: Collection[tuple[str, Any]] | None) -> None:
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
    if isinstance(exc, ResourceExhausted) and exc.retry_after_ms is not None:
        trailing = ((RETRY_PUSHBACK_KEY, str(exc.retry_after_ms)),)
    if exc.reason:
        trailing = (*trailing, (ERROR_REASON_KEY, exc.reason))
    await context.abort(exc.code, exc.message, trailing)


def _wrap_handler(handler: grpc.RpcMethodHandler, call: _Call) -> grpc.RpcMethodHandler:
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary_out(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with call.guard(context):
                return await inner(request, context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_out, *serializers)
        return grpc.stream_unary_rpc_method_handler(unary_out, *serializers)

    inner_stream = handler.unary_stream or handler.stream_stream

    async def stream_out(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        handler = inner_stream(request, context)
        # A client cancel can land while gRPC is sending, outside the handler, leaving it
        # suspended (and, say, an LLM generating) until the garbage collector finds it.
        context.add_done_callback(lambda _ctx: _close_soon(handler))
        async with call.guard(context), aclosing(handler) as stream:
            async for item in stream:  # aclosing: the handler's cleanup runs on cancel at once
                yield item

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream_out, *serializers)
    return grpc.stream_stream_rpc_method_handler(stream_out, *serializers)


_CLOSING: set[asyncio.Task[None]] = set()


def _close_soon(handler: Any) -> None:
    """The call is over: close the handler's generator now, so its cleanup runs at once."""

    async def close() -> None:
        with contextlib.suppress(RuntimeError):  # still running: the cancel reached it
            await handler.aclose()

    task = asyncio.ensure_future(close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
