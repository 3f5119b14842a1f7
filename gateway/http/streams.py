"""Streaming helpers: start a response only once its first piece is in hand (so a failure
before it is a proper HTTP status), and server-sent events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gateway.http.errors import error_body, status_of
from services.runtime.errors import MiloError

log = logging.getLogger(__name__)
T = TypeVar("T")
# How one server-sent event is documented: `data` is JSON text (or `[DONE]`).
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
    },
}


async def prime(stream: AsyncIterator[T]) -> tuple[T | None, AsyncIterator[T]]:
    """The stream's first item (raising its error, if any, now) and the whole stream again."""
    first = await anext(stream, None)

    async def again() -> AsyncIterator[T]:
        try:
            if first is not None:
                yield first
            async for item in stream:
                yield item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return first, again()


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event, UTF-8: `data` as JSON (a str is sent as is), after an
    `event:` line when `event` is given."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


async def sse_guard(
    path: str, stream: AsyncIterator[bytes], error_event: Callable[[dict[str, Any]], bytes]
) -> AsyncIterator[bytes]:
    """A failure after the response started is sent as a last SSE event."""
    try:
        async for chunk in stream:
            yield chunk
    except MiloError as exc:
        log.info("%s: stream ended by %s: %s", path, exc.code.name, exc.message)
        yield error_event(error_body(path, status_of(exc), exc.code.name, exc.message))
