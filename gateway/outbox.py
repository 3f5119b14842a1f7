"""The session's outgoing event stream, with what barge-in and history need.

Turns push events; the servicer drains them to the client in order. When a reply is cut
short, its pending LLM deltas, sentences and audio are dropped here, so nothing more of it
reaches the client. The outbox also knows which reply sentences really reached the client:
with audio out, those whose audio had started to go out; with text out, those sent. That
is what the conversation history keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from milo.gateway.v1 import gateway_pb2 as gw

_REPLY_EVENTS = frozenset({"llm_delta", "reply_sentence", "audio"})
_DONE = object()


class Outbox:
    """A session's events in order; `on_turn_end(turn_id, sentences)` is called as each
    TurnEnded goes out, with the pivot-language reply sentences that reached the client
    (with `audio_out`, those whose audio had started)."""

    def __init__(self, on_turn_end: Callable[[int, list[str]], None], audio_out: bool) -> None:
        # Unbounded: a turn's events are bounded by its reply (a few MB of audio at most).
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stopped: set[int] = set()
        self._written: dict[tuple[int, int], str] = {}  # (turn, sentence) -> pivot text
        self._sent: dict[int, list[str]] = {}
        self._on_turn_end = on_turn_end
        self._audio_out = audio_out

    def put(self, item: gw.ConverseResponse) -> None:
        """Queue one event (never blocks)."""
        self._queue.put_nowait(item)

    def stop_reply(self, turn_id: int) -> None:
        """Drop whatever of this turn's reply is still queued or still to come."""
        self._stopped.add(turn_id)

    def close(self) -> None:
        """End the stream after the events already queued."""
        self._queue.put_nowait(_DONE)

    async def drain(self) -> AsyncGenerator[gw.ConverseResponse, None]:
        """The events until `close`, less the reply events of stopped turns; a BargedIn
        event gets its `sentences_sent` filled in here."""
        while (item := await self._queue.get()) is not _DONE:
            assert isinstance(item, gw.ConverseResponse)
            kind = item.WhichOneof("event")
            if kind in _REPLY_EVENTS and item.turn_id in self._stopped:
                continue
            if kind == "barged_in":
                item.barged_in.sentences_sent = len(self._sent.get(item.turn_id, []))
            self._track(kind, item)
            yield item
            if kind == "turn_ended":
                self._on_turn_end(item.turn_id, self._sent.pop(item.turn_id, []))

    def _track(self, kind: str | None, item: gw.ConverseResponse) -> None:
        if kind == "reply_sentence":
            sentence = item.reply_sentence
            if self._audio_out:
                self._written[(item.turn_id, sentence.sentence_index)] = sentence.pivot_text
            else:
                self._sent.setdefault(item.turn_id, []).append(sentence.pivot_text)
        elif kind == "audio":
            key = (item.turn_id, item.audio.sentence_index)
            if key in self._written:
                self._sent.setdefault(item.turn_id, []).append(self._written.pop(key))
