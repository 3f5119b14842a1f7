"""GET /v1/realtime (WebSocket, the OpenAI Realtime protocol) and
POST /v1/realtime/client_secrets.

Auth, when the gateway has an API key: `Authorization: Bearer <key>` (or `X-API-Key`), or
the subprotocol browsers use, `openai-insecure-api-key.<key>`, or `?api_key=`; the key may
also be a client secret minted by POST /v1/realtime/client_secrets (which needs the real
key). A client secret is checked even when no key is configured: an expired or used one is
refused. A refused socket gets HTTP 401 at the handshake. The server picks the
subprotocol `realtime` when the client offers it, as OpenAI's does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from gateway.http import metrics
from gateway.http.auth import given_key
from gateway.http.deps import ERRORS, Bridge, bridge
from gateway.http.errors import error_body
from gateway.http.realtime import events as ev
from gateway.http.realtime.config import RealtimeConfig
from gateway.http.realtime.secrets import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    MIN_TTL_S,
    Minted,
    SecretRefused,
    is_client_secret,
)
from gateway.http.realtime.session import RealtimeSession
from services.runtime.errors import MiloError, Unauthenticated

log = logging.getLogger(__name__)
router = APIRouter()
_KEY_PROTOCOL = "openai-insecure-api-key."


class ExpiresAfter(BaseModel):
    """When a client secret expires: `seconds` after its creation (the only anchor)."""

    model_config = ConfigDict(extra="ignore")

    anchor: str = Field("created_at", pattern="^created_at$")
    seconds: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)


class ClientSecretIn(BaseModel):
    """The body of POST /v1/realtime/client_secrets, as OpenAI's API reference defines it
    ("Create client secret", https://platform.openai.com/docs/api-reference/realtime);
    unknown fields are ignored. Unlike OpenAI's, a Milo secret opens one session only."""

    model_config = ConfigDict(extra="ignore")

    expires_after: ExpiresAfter | None = None
    session: dict[str, Any] | None = Field(
        None, description="the session's first settings, as in session.update"
    )


@router.post(
    "/v1/realtime/client_secrets",
    tags=["openai"],
    responses=ERRORS,
    summary="OpenAI Realtime: mint a short-lived key for one session",
)
async def client_secrets(body: ClientSecretIn, request: Request) -> dict[str, Any]:
    """A client secret ("ek_...") that opens one /v1/realtime session until `expires_at`
    (Unix s; 10 min by default, 10 s to 2 h), with the session it will start. 400 for bad
    session settings; 401 without the gateway's key, when one is set."""
    config = RealtimeConfig().updated(body.session or {})  # a bad session: 400 now
    ttl = (body.expires_after or ExpiresAfter()).seconds
    minted = bridge(request).secrets.mint(ttl, body.session or {})
    return {
        "value": minted.value,
        "expires_at": int(minted.expires_at),
        "session": config.describe(),
    }


def _offered_key(ws: WebSocket) -> str | None:
    for protocol in ws.scope.get("subprotocols") or ():
        if protocol.startswith(_KEY_PROTOCOL):
            return str(protocol[len(_KEY_PROTOCOL) :])
    return given_key(ws, allow_query=True)


def authorize(ws: WebSocket, b: Bridge) -> Minted | None:
    """The client secret's grant, None for the API key (or no auth); raises
    Unauthenticated or SecretRefused."""
    key = _offered_key(ws)
    if key is not None and is_client_secret(key):
        return b.secrets.redeem(key)
    b.api_key.check_value(key)
    return None


async def _deny(ws: WebSocket, message: str) -> None:
    log.info("realtime socket refused: %s", message)
    body = error_body("/v1/realtime", 401, "UNAUTHENTICATED", message)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(body, status_code=401))
    else:
        await ws.close(code=1008, reason="unauthenticated")


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    """One Realtime session per socket (see the module's docstring), holding an admission
    slot for its whole length; with the admission queue full it gets an `error` event and
    close code 1013 (try again later)."""
    b = bridge(ws)
    try:
        grant = authorize(ws, b)
    except (Unauthenticated, SecretRefused) as exc:
        await _deny(ws, exc.message if isinstance(exc, MiloError) else str(exc))
        return
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    metrics.WEBSOCKETS.inc()
    lock = asyncio.Lock()

    async def send(event: dict[str, Any]) -> None:
        async with lock:
            await ws.send_text(json.dumps(event, ensure_ascii=False))

    config = RealtimeConfig(model=(ws.query_params.get("model") or "milo")[:200])
    session = RealtimeSession(
        b.core,
        config.updated(grant.session) if grant else config,
        send,
        b.voices.resolve,
        b.settings.max_audio_chunk_bytes,
    )
    try:
        async with b.admission.slot():
            await session.start()
            await _serve(ws, session, send)
    except MiloError as exc:  # the admission queue is full
        await send(ev.error(exc.message, exc.code.name.lower(), kind="server_error"))
        await ws.close(code=1013, reason=exc.code.name)
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
        metrics.WEBSOCKETS.dec()


async def _serve(ws: WebSocket, session: RealtimeSession, send: Any) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await session.receive(message["text"])
        else:
            await send(
                ev.error(
                    "binary frames are not part of the Realtime protocol: send "
                    "audio base64-encoded in input_audio_buffer.append",
                    "invalid_event",
                )
            )
