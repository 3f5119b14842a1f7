"""What every route needs, kept on app.state and handed to routes as dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from gateway.config import GatewaySettings
from gateway.core import GatewayCore
from gateway.http.auth import ApiKey
from gateway.http.realtime.secrets import ClientSecrets
from gateway.http.status import StatusBoard
from gateway.http.voices import VoiceMap
from services.runtime.admission import Admission
from services.runtime.errors import InvalidArgument

# Documented on every model route, so /docs and schema-based testers know the error shapes.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, text in (
        (400, "bad input"),
        (401, "missing or wrong API key"),
        (413, "request too large"),
        (415, "unsupported media type"),
        (422, "the body does not match the schema"),
        (429, "a queue is full: retry after Retry-After seconds"),
        (502, "a service failed"),
        (503, "a service is down"),
        (504, "a service timed out"),
    )
}


@dataclass
class Bridge:
    """The HTTP bridge's shared objects, one per app (app.state.bridge)."""

    settings: GatewaySettings
    core: GatewayCore
    api_key: ApiKey
    board: StatusBoard
    admission: Admission
    voices: VoiceMap
    secrets: ClientSecrets = field(default_factory=ClientSecrets)


def bridge(conn: HTTPConnection) -> Bridge:
    """The app's Bridge, for a request or a WebSocket."""
    found: Bridge = conn.app.state.bridge
    return found


def core(request: Request) -> GatewayCore:
    """The GatewayCore behind the app (a route dependency)."""
    return bridge(request).core


def check_text(text: str, settings: GatewaySettings, name: str = "text") -> None:
    """Longer than the gateway's limit: 400 before any service is bothered."""
    if len(text) > settings.max_text_chars:
        raise InvalidArgument(
            f"{name} has {len(text)} characters; the limit is {settings.max_text_chars}"
        )
