"""Client secrets: short-lived keys for one Realtime session, so a web page never holds
the gateway's API key. `POST /v1/realtime/client_secrets` (which needs the real key) mints
one; the page opens `/v1/realtime` with it (Bearer header or the WebSocket subprotocol
`openai-insecure-api-key.<secret>`). A secret opens one session, until it expires (10 s to
2 h after it was made, 10 min by default, as OpenAI's); the session settings given with it
are the new session's first settings. Secrets live in the gateway's memory only.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "ek_"
DEFAULT_TTL_S, MIN_TTL_S, MAX_TTL_S = 600, 10, 7200


@dataclass
class Minted:
    """One client secret: its value ("ek_" and 32 URL-safe characters), its expiry and the
    session settings given with it."""

    value: str
    expires_at: float  # unix time, s
    session: dict[str, Any]


class SecretRefused(Exception):
    """The secret is unknown, used already, or expired (the message says which)."""


class ClientSecrets:
    """The live secrets, at most `max_live` (the oldest dropped past it); `clock` gives
    Unix time in s."""

    def __init__(self, clock: Callable[[], float] = time.time, max_live: int = 10_000) -> None:
        self.clock = clock
        self._live: dict[str, Minted] = {}
        self._max_live = max_live

    def mint(self, ttl_s: int, session: dict[str, Any]) -> Minted:
        """A new secret valid for `ttl_s` seconds (the caller checks the range), carrying
        `session` as the first settings of the session it opens."""
        self._forget_expired()
        if len(self._live) >= self._max_live:  # a flood of unused secrets: drop the oldest
            del self._live[next(iter(self._live))]
        minted = Minted(PREFIX + secrets.token_urlsafe(24), self.clock() + ttl_s, session)
        self._live[minted.value] = minted
        return minted

    def redeem(self, value: str) -> Minted:
        """The secret's grant, used up; SecretRefused if it cannot open a session."""
        # A lookup by hash: 192 random bits leave nothing for a timing attack to find.
        found = self._live.pop(value, None)
        if found is None:
            raise SecretRefused(
                "unknown or already used client secret: mint a new one with "
                "POST /v1/realtime/client_secrets"
            )
        if found.expires_at <= self.clock():
            raise SecretRefused(
                "the client secret has expired: mint a new one with "
                "POST /v1/realtime/client_secrets"
            )
        return found

    def _forget_expired(self) -> None:
        now = self.clock() - 3600  # an expired one is kept an hour, to say "expired"
        for key in [k for k, m in self._live.items() if m.expires_at <= now]:
            del self._live[key]


def is_client_secret(value: str) -> bool:
    """True when `value` looks like a client secret ("ek_...") rather than an API key."""
    return value.startswith(PREFIX)
