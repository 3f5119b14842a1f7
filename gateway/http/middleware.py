"""ASGI middleware: request size limit (413), body read timeout (408), admission (429) and
per-route metrics.

Pure ASGI (not BaseHTTPMiddleware), so streamed responses flow through untouched and an
admission slot is held until the last byte of a streamed reply has gone out.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http import metrics
from gateway.http.auth import ApiKey
from gateway.http.errors import error_body, milo_error_response
from services.runtime.admission import Admission
from services.runtime.errors import ResourceExhausted, Unauthenticated


class BodyLimit:
    """Refuse bodies over `max_bytes`: at once by Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP: answer 413 for a Content-Length over the limit (after draining up to 64 MiB
        of the body); otherwise pass the request on, and raise HTTPException(413) in the app
        once the bytes read pass the limit. Other scopes pass untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _drain(receive, int(length))
            await _send_json(send, scope["path"], 413, "REQUEST_TOO_LARGE", self._message())
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                if message.get("more_body"):
                    await _drain(receive, 0)
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is over the gateway's limit of {self.max_bytes} bytes"


class BodyTimeout:
    """Each read of the request body waits at most `timeout_s` for the client; past it the
    app sees the client as gone, and the client gets 408 (whatever the app answers) on a
    connection that is then closed. Without it a body shorter than its Content-Length held
    a worker until the client gave up."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP: run the app with each body read bounded by `timeout_s`; on a timeout the app
        reads a disconnect and the client gets 408 with Connection: close."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = body_done = timed_out = False

        async def timed() -> Message:
            nonlocal body_done, timed_out
            if body_done or started:  # e.g. a streamed reply waiting for the disconnect
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                return {"type": "http.disconnect"}
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if timed_out:
                await answer_408()
                return  # the app's own answer to the "disconnect" is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def answer_408() -> None:
            nonlocal started
            if not started:
                started = True
                message = (
                    f"the request body did not arrive: nothing for {self.timeout_s:g} "
                    "s before the announced Content-Length was reached"
                )
                await _send_json(send, scope["path"], 408, "REQUEST_TIMEOUT", message, close=True)

        try:
            await self.app(scope, timed, sending)
        except Exception:
            if not timed_out:
                raise
        if timed_out:
            await answer_408()


class RequireKey:
    """With an API key configured, every /v1/* HTTP request must carry it (checked before
    the body is read, so a caller without the key learns nothing else)."""

    def __init__(self, app: ASGIApp, api_key: ApiKey) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 (with WWW-Authenticate) to a /v1/* HTTP request without the key; pass
        on the rest."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/v1/") and self.api_key.enabled:
            try:
                self.api_key.check(HTTPConnection(scope))
            except Unauthenticated as exc:
                await milo_error_response(path, exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Admitted:
    """Model routes (/v1/*, HTTP) take a slot of the gateway's admission: at most
    `max_concurrency` at once, `max_queue` waiting, the rest get 429 with Retry-After."""

    _OPEN = ("/v1/status", "/v1/models")

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a /v1/* HTTP request (but /v1/status and /v1/models) inside an admission slot,
        held until its response is sent; 429 with Retry-After when the queue is full."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path.startswith(self._OPEN):
            await self.app(scope, receive, send)
            return
        entered = False
        try:
            async with self.admission.slot():
                entered = True
                await self.app(scope, receive, send)
        except ResourceExhausted as exc:
            if entered:
                raise
            await milo_error_response(path, exc)(scope, receive, send)


class Metrics:
    """Requests and their duration by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run an HTTP request, counted in milo_gateway_http_requests by method, route
        template and status (500 if no response started) and timed in
        milo_gateway_http_request_duration_seconds."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.monotonic(), 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "other")
            metrics.HTTP_REQUESTS.labels(scope["method"], name, str(status)).inc()
            metrics.HTTP_SECONDS.labels(scope["method"], name).observe(time.monotonic() - start)


# Up to this much of a refused body is read and dropped, so that the client, still
# sending, reads the 413 instead of a connection reset; past it the connection is closed.
_DRAIN_BYTES = 64 * 1024 * 1024


async def _drain(receive: Receive, announced: int) -> None:
    if announced > _DRAIN_BYTES:
        return
    read = 0
    while read <= _DRAIN_BYTES:
        message = await receive()
        read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _send_json(
    send: Send, path: str, status: int, code: str, message: str, close: bool = False
) -> None:
    body: Any = json.dumps(error_body(path, status, code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
