"""The API key on HTTP: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in
constant time and never logged. Browsers cannot set headers on a WebSocket, so the
conversation socket also takes the key as the `api_key` query parameter (the gateway writes
no access log, so it is not recorded either)."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from services.runtime.errors import Unauthenticated

_MESSAGE = "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def given_key(conn: HTTPConnection, allow_query: bool = False) -> str | None:
    """The key the client sent: X-API-Key, else a Bearer token, else (with `allow_query`)
    the `api_key` query parameter; None when there is none."""
    header = conn.headers.get("x-api-key")
    if header:
        return header
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if allow_query:
        return conn.query_params.get("api_key")
    return None


class ApiKey:
    """A FastAPI dependency; with no key configured every request passes."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        """True when a key is configured, so requests must send it."""
        return self._key is not None

    def check(self, conn: HTTPConnection, allow_query: bool = False) -> None:
        """Raise Unauthenticated (HTTP 401) unless the request sends the key (see
        `given_key`)."""
        self.check_value(given_key(conn, allow_query))

    def check_value(self, given: str | None) -> None:
        """Unauthenticated unless `given` is the key (or no key is configured)."""
        if self._key is None:
            return
        if given is None or not hmac.compare_digest(given.encode(), self._key):
            raise Unauthenticated(_MESSAGE)

    async def __call__(self, conn: HTTPConnection) -> None:
        """The dependency itself: `check` on headers only."""
        self.check(conn)
