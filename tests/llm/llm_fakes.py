"""Test doubles for the LLM service: a scripted engine, and a local HTTP server that speaks
the Anthropic Messages streaming protocol (server-sent events)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from milo.llm.v1 import llm_pb2
from services.llm.domain import ChatMessage, Event, Finish, FinishReason, Piece, Role, Sampling
from services.llm.engine import TemplateError

WORDS = ("Bonjour", " !", " Je", " suis", " Milo", ".")


class FakeEngine:
    """Replies with WORDS, one token each. Gated: each token waits for a permit (or the
    cancel flag), so a test decides exactly how far generation gets."""

    model_id = "fake-llm"
    device = "cpu"
    parallel = 1

    def __init__(
        self, context_tokens: int = 4096, gated: bool = False, words: Sequence[str] = WORDS
    ) -> None:
        self.context_tokens = context_tokens
        self.words = tuple(words)
        self.permits: threading.Semaphore | None = threading.Semaphore(0) if gated else None
        self.started = threading.Event()  # a generation began
        self.finished = threading.Event()  # a generation ended (its Finish is in .finishes)
        self.calls: list[tuple[tuple[ChatMessage, ...], Sampling]] = []
        self.finishes: list[Finish] = []
        self.loaded = self.closed = False

    def load(self) -> None:
        self.loaded = True

    def close(self) -> None:
        self.closed = True

    def ungate(self) -> None:
        gate, self.permits = self.permits, None
        if gate is not None:
            gate.release(1000)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Two tokens per message plus one per word; two user turns in a row are refused."""
        roles = [m.role for m in messages]
        if any(a is b is Role.USER for a, b in itertools.pairwise(roles)):
            raise TemplateError("Conversation roles must alternate user/assistant")
        return sum(2 + len(m.content.split()) for m in messages)

    def generate(
        self, messages: Sequence[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Iterator[Event]:
        self.calls.append((tuple(messages), sampling))
        self.started.set()
        prompt = self.count_prompt_tokens(messages)
        count, reason = 0, FinishReason.STOP
        for word in self.words:
            if count >= sampling.max_tokens:
                reason = FinishReason.LENGTH
                break
            if not self._wait_turn(cancel):
                reason = FinishReason.CANCELLED
                break
            count += 1
            yield Piece(word)
            if cancel.is_set():
                reason = FinishReason.CANCELLED
                break
        self.finishes.append(Finish(reason, prompt, count))
        self.finished.set()
        yield self.finishes[-1]

    def _wait_turn(self, cancel: threading.Event) -> bool:
        while not cancel.is_set():
            gate = self.permits
            if gate is None or gate.acquire(timeout=0.005):
                return True
        return False


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def text_delta(text: str) -> bytes:
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "usage": {"input_tokens": 21, "output_tokens": 1},
        },
    },
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeAnthropic:
    """POST /v1/messages answered by `mode`: "ok" streams PIECES, "error" is HTTP 529,
    "hang" starts the stream but sends no text until closed, "fail_mid" sends one piece
    then an error event."""

    mode: str = "ok"
    pieces: tuple[str, ...] = ("Bonjour", " depuis", " le nuage.")
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> FakeAnthropic:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.received.append(await _read_request(reader))
            await getattr(self, f"_{self.mode}")(writer)
        finally:
            writer.close()

    async def _ok(self, w: asyncio.StreamWriter) -> None:
        _stream_head(w)
        w.write(MESSAGE_START)
        for piece in self.pieces:
            w.write(text_delta(piece))
            await w.drain()
        w.write(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": len(self.pieces)},
                },
            )
        )
        w.write(sse("message_stop", {"type": "message_stop"}))
        await w.drain()

    async def _error(self, w: asyncio.StreamWriter) -> None:
        body = json.dumps(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ).encode()
        w.write(
            b"HTTP/1.1 529 Site Overloaded\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        await w.drain()

    async def _hang(self, w: asyncio.StreamWriter) -> None:
        _stream_head(w)
        w.write(MESSAGE_START + b'event: ping\ndata: {"type": "ping"}\n\n')
        await w.drain()
        await self._closing.wait()

    async def _fail_mid(self, w: asyncio.StreamWriter) -> None:
        _stream_head(w)
        w.write(MESSAGE_START + text_delta(self.pieces[0]))
        w.write(
            sse(
                "error",
                {
                    "type": "error",
                    "error": {"type": "api_error", "message": "Internal server error"},
                },
            )
        )
        await w.drain()


def _stream_head(w: asyncio.StreamWriter) -> None:
    w.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"connection: close\r\n\r\n"
    )


async def _read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    path = head[0].split(" ")[1]
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(path, headers, json.loads(body) if body else {})


# --- building requests and reading replies ------------------------------------------------


def user(text: str) -> llm_pb2.Message:
    return llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text)


def chat(*messages: llm_pb2.Message, **sampling: Any) -> llm_pb2.ChatRequest:
    allow_cloud = sampling.pop("allow_cloud", None)
    request = llm_pb2.ChatRequest(
        messages=messages or [user("Salama")], sampling=llm_pb2.SamplingOptions(**sampling)
    )
    if allow_cloud is not None:
        request.allow_cloud = allow_cloud
    return request


async def collect(call: Any) -> tuple[list[str], llm_pb2.ChatDone]:
    """The deltas of a Chat call and its ChatDone (which must come last, once)."""
    deltas: list[str] = []
    done = None
    async for reply in call:
        assert done is None, "nothing may follow ChatDone"
        if reply.HasField("delta"):
            deltas.append(reply.delta.text)
        else:
            done = reply.done
    assert done is not None, "the stream ended without ChatDone"
    return deltas, done
