"""WS /v1/converse: a Converse session over a WebSocket, through GatewayCore.converse (the
code the gRPC Converse runs).

In: text frames are ConverseRequest messages as JSON (`{"config": {...}}` first, then
`{"text": {"text": "..."}}`, `{"control": {"action": "ACTION_BARGE_IN"}}`, ...); binary
frames are audio in the session's input format. Out: each ConverseResponse as a JSON text
frame `{"event": "<name>", "turn_id": n, "<name>": {...}}` with the gRPC event names; an
`audio` event carries no bytes in its JSON (`chunk.bytes` says how many) and is followed at
once by one binary frame with them. The key, when configured, comes in a header or as the
`api_key` query parameter. A session that cannot start gets an `error` event, then a close
code of 4000 + the HTTP status (4400, 4401, 4429, 4503).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket
from google.protobuf import json_format
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.http import metrics
from gateway.http.deps import bridge
from gateway.http.errors import status_of
from milo.gateway.v1 import gateway_pb2 as gw
from services.runtime.errors import InvalidArgument, MiloError

log = logging.getLogger(__name__)
router = APIRouter()


class ClientGone(Exception):
    """The browser closed the socket: the session ends at once."""


def event_json(event: gw.ConverseResponse) -> tuple[dict[str, Any], bytes | None]:
    """The event as JSON (gRPC field names) and, for audio, its bytes apart."""
    kind = event.WhichOneof("event") or "unknown"
    data = None
    if kind == "audio":
        data = event.audio.chunk.data
        copy = gw.ConverseResponse()
        copy.CopyFrom(event)
        copy.audio.chunk.data = b""
        event = copy
    body = json_format.MessageToDict(
        event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if data is not None:
        body["audio"]["chunk"].pop("data", None)
        body["audio"]["chunk"]["bytes"] = len(data)
    return {"event": kind, **body}, data


def parse_request(text: str) -> gw.ConverseRequest:
    """A text frame as a ConverseRequest (protobuf JSON); InvalidArgument when it is not one."""
    try:
        return json_format.Parse(text, gw.ConverseRequest())
    except json_format.ParseError as exc:
        raise InvalidArgument(
            f"not a ConverseRequest in JSON ({exc}); expected e.g. "
            '{"text": {"text": "..."}} or {"control": {"action": '
            '"ACTION_BARGE_IN"}}'
        ) from exc


def error_event(code: str, message: str) -> dict[str, Any]:
    """An in-band `error` event at STAGE_GATEWAY (turn 0); `code` is a gRPC status name."""
    return {
        "event": "error",
        "turn_id": 0,
        "error": {"stage": "STAGE_GATEWAY", "code": code, "message": message},
    }


class Socket:
    """One WebSocket: frames in as ConverseRequests, events out, one writer at a time."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self._started = False

    async def send(self, body: dict[str, Any], data: bytes | None = None) -> None:
        """Send `body` as a JSON text frame, then `data` (audio) as a binary frame, if any."""
        async with self._lock:
            await self.ws.send_text(json.dumps(body, ensure_ascii=False))
            if data is not None:
                await self.ws.send_bytes(data)

    async def requests(self) -> AsyncIterator[gw.ConverseRequest]:
        """The client's frames as requests: binary frames are audio. A text frame that is
        not a request raises InvalidArgument if it comes first, else gets an `error` event
        and is dropped; ClientGone when the client disconnects."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise ClientGone
            if message.get("bytes") is not None:
                yield gw.ConverseRequest(audio=message["bytes"])
                continue
            try:
                request = parse_request(message.get("text") or "")
            except InvalidArgument as exc:
                if not self._started:
                    raise
                await self.send(error_event("INVALID_ARGUMENT", exc.message))
                continue
            self._started = True
            yield request

    async def refuse(self, exc: MiloError) -> None:
        """End a session that could not start: an `error` event, then close code 4000 + the
        error's HTTP status (e.g. 4401), if the socket is still open."""
        log.info("converse socket refused: %s %s", exc.code.name, exc.message)
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.send(error_event(exc.code.name, exc.message))
            await self.ws.close(code=4000 + status_of(exc), reason=exc.code.name)


@router.websocket("/v1/converse")
async def converse(ws: WebSocket) -> None:
    """One conversation per socket (see the module's docstring), holding an admission slot
    for its whole length; it ends when the client closes or the session is over."""
    b = bridge(ws)
    await ws.accept()
    sock = Socket(ws)
    metrics.WEBSOCKETS.inc()
    try:
        b.api_key.check(ws, allow_query=True)
        # A context manager, not a bare stream: a send that fails (the client reset the
        # socket) leaves the block, which ends the session and cancels its LLM and TTS calls.
        async with b.admission.slot(), b.core.conversation(sock.requests()) as events:
            async for event in events:
                await sock.send(*event_json(event))
        await ws.close()
    except MiloError as exc:
        await sock.refuse(exc)
    except (ClientGone, WebSocketDisconnect):
        pass
    finally:
        metrics.WEBSOCKETS.dec()
