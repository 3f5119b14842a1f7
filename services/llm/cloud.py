"""The optional cloud model: a streaming client for the Anthropic Messages API over httpx.

POST {base_url}/v1/messages with `stream: true`; the reply is server-sent events:
message_start (input token count), content_block_delta with text_delta (the text),
message_delta (stop_reason, output token count), message_stop; `ping` is ignored and an
`error` event fails the call. The client only streams; when to give up on the cloud and
fall back to the local model is the chat runner's decision.

The cloud model gets the system prompt, the messages, max_tokens, the stop strings and the
temperature (capped at 1, the API's maximum). top_p, top_k, repeat_penalty and seed are
local-model knobs and are not sent (recent Claude models refuse temperature and top_p
together).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from services.llm.domain import ChatMessage, Event, Finish, FinishReason, Piece, Role, Sampling

log = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
_STOP_REASONS = {"max_tokens": FinishReason.LENGTH}  # end_turn, stop_sequence, ...: STOP


class CloudError(Exception):
    """The cloud call failed: HTTP error status, error event, or a malformed stream."""


class CloudUnreachable(CloudError):
    """No connection could be made."""


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: its `event:` name ("message" if none, as the SSE standard says) and
    its `data:` lines joined by newlines."""

    event: str
    data: str


class SseParser:
    """Server-sent events, fed line by line (without line endings)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """Returns an event when `line` ends one (a blank line), else None."""
        if not line:
            if not self._data and not self._event:
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # a comment
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def request_body(model: str, messages: Sequence[ChatMessage], sampling: Sampling) -> dict[str, Any]:
    """The Messages API request for a conversation (system prompt as its own field)."""
    system = [m.content for m in messages[:1] if m.role is Role.SYSTEM]
    turns = [m.as_dict() for m in messages[len(system) :]]
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": sampling.max_tokens,
        "messages": turns,
        "stream": True,
        "temperature": min(sampling.temperature, 1.0),
    }
    if system:
        body["system"] = system[0]
    if sampling.stop:
        body["stop_sequences"] = list(sampling.stop)
    return body


class _Reply:
    """Folds the Messages stream events into Pieces and one Finish."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.reason = FinishReason.STOP
        self.done = False

    def on(self, kind: str, data: dict[str, Any]) -> Event | None:
        if kind == "message_start":
            usage = data.get("message", {}).get("usage", {})
            self.prompt_tokens = int(usage.get("input_tokens", 0))
        elif kind == "content_block_delta":
            delta = data.get("delta", {})
            if delta.get("type") == "text_delta" and delta.get("text"):
                return Piece(str(delta["text"]))
        elif kind == "message_delta":
            self.reason = _STOP_REASONS.get(
                data.get("delta", {}).get("stop_reason"), FinishReason.STOP
            )
            self.completion_tokens = int(data.get("usage", {}).get("output_tokens", 0))
        elif kind == "message_stop":
            self.done = True
            return Finish(self.reason, self.prompt_tokens, self.completion_tokens)
        elif kind == "error":
            error = data.get("error", {})
            raise CloudError(f"{error.get('type', 'error')}: {error.get('message', '')}")
        return None


class AnthropicClient:
    """Streams replies from one cloud model. Create and use it on one event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        try:
            import httpx  # lazy: only needed when the cloud model is configured
        except ImportError as exc:
            raise RuntimeError("the cloud model needs httpx: pip install 'milo[llm]'") from exc
        self.model = model
        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={
                "x-api-key": api_key,
                "anthropic-version": API_VERSION,
                "content-type": "application/json",
            },
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        )

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self._client.aclose()

    async def stream(
        self, messages: Sequence[ChatMessage], sampling: Sampling
    ) -> AsyncGenerator[Event, None]:
        """Pieces of the reply as they arrive, then one Finish."""
        body = request_body(self.model, messages, sampling)
        try:
            async with self._client.stream("POST", "/v1/messages", json=body) as response:
                if response.status_code != 200:
                    raise CloudError(await _error_text(response))
                async for event in _events(response):
                    yield event
        except (self._httpx.ConnectError, self._httpx.ConnectTimeout) as exc:
            raise CloudUnreachable(f"cannot connect: {exc}") from exc
        except self._httpx.HTTPError as exc:
            raise CloudError(f"{type(exc).__name__}: {exc}") from exc


async def _events(response: Any) -> AsyncIterator[Event]:
    parser, reply = SseParser(), _Reply()
    async for line in response.aiter_lines():
        sse = parser.feed(line)
        if sse is None:
            continue
        try:
            data = json.loads(sse.data) if sse.data else {}
        except json.JSONDecodeError as exc:
            raise CloudError(f"malformed event data: {sse.data[:100]!r}") from exc
        event = reply.on(sse.event, data)
        if event is not None:
            yield event
        if reply.done:
            return
    raise CloudError("the stream ended before message_stop")


async def _error_text(response: Any) -> str:
    body = (await response.aread())[:2000].decode("utf-8", errors="replace")
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.strip()
    return f"HTTP {response.status_code}: {message}"
