"""The session's ear: a StreamingRecognize call fed with the client's audio.

Opened on the first audio chunk (after a failure, on the next one). STT events become
session events: speech started (which barges in on a reply in progress), partial and final
transcripts; each final transcript starts a turn. END_OF_UTTERANCE half-closes the STT
stream, which makes it finalize what it heard; the next audio opens a new one. The
listener knows its session only through the small `SessionPort` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from gateway.turn import StageFailure
from gateway.upstream import Upstream, UpstreamError
from milo.gateway.v1 import gateway_pb2 as gw
from milo.stt.v1 import stt_pb2

log = logging.getLogger(__name__)
_END = object()
Reason = gw.TurnEnded.Reason


class SessionPort(Protocol):
    """What the listener needs of its session."""

    id: str

    def next_turn_id(self) -> int:
        """A new turn id, one more than the last."""
        ...

    def emit(self, turn_id: int, **event: Any) -> None:
        """Queue one event for the client, e.g. emit(3, transcript=gw.Transcript(...))."""
        ...

    def barge_in(self) -> None:
        """The user spoke: cancel the reply in progress, if any."""
        ...

    async def start_turn(
        self, turn_id: int, text: str, t0: float, stt_final_s: float | None = None
    ) -> None:
        """Start a turn on the user's `text`; `t0` (time.monotonic(), s) is the end of
        speech, `stt_final_s` the seconds from it to the final transcript."""
        ...

    def end_turn(self, turn_id: int, reason: int, failure: StageFailure | None = None) -> None:
        """End a turn: send its last events; `reason` is a TurnEnded.Reason, `failure` the
        stage that failed, if one did."""
        ...


class Listener:
    """The session's STT stream: `config` is sent first on each StreamingRecognize call;
    with `barge_in`, speech heard while a reply plays cancels that reply."""

    def __init__(
        self,
        session: SessionPort,
        upstream: Upstream,
        config: stt_pb2.StreamingConfig,
        barge_in: bool,
    ) -> None:
        self.session, self.upstream = session, upstream
        self._config = stt_pb2.StreamingRecognizeRequest(config=config)
        self._barge_in = barge_in
        self._audio: asyncio.Queue[object] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._utterance_turn = 0  # turn id of the utterance being heard, 0 when none
        self._speech_ended_at: float | None = None

    async def feed(self, audio: bytes) -> None:
        """Send one chunk of the client's audio (in the config's input format), opening an
        STT stream if none is open; waits while 256 chunks are queued."""
        if self._audio is None:
            self._open()
        assert self._audio is not None
        await self._audio.put(audio)

    def _open(self) -> None:
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
        self._audio = queue
        self._reader = asyncio.create_task(self._read(queue))

    async def _requests(
        self, queue: asyncio.Queue[object]
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield self._config
        while (chunk := await queue.get()) is not _END:
            yield stt_pb2.StreamingRecognizeRequest(audio=chunk)  # type: ignore[arg-type]

    async def _read(self, queue: asyncio.Queue[object]) -> None:
        try:
            async with self.upstream.stream(
                "stt", "StreamingRecognize", self._requests(queue)
            ) as events:
                async for event in events:
                    await self._on_event(event)
        except UpstreamError as exc:
            self._failed(exc)
        finally:
            if self._audio is queue:
                self._audio = None

    def _failed(self, exc: UpstreamError) -> None:
        turn_id = self._utterance_turn or self.session.next_turn_id()
        self._utterance_turn = 0
        log.info(
            "session %s: STT stream failed: %s %s", self.session.id, exc.code.name, exc.details
        )
        failure = StageFailure(gw.STAGE_STT, exc.code.name, exc.message)
        self.session.end_turn(turn_id, Reason.REASON_ERROR, failure)

    async def _on_event(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        kind, s = event.WhichOneof("event"), self.session
        if kind == "speech_started":
            # The cause before its effect (OpenAI Realtime's order too): the new turn's
            # speech_started, then the reply it interrupts ends (barged_in, turn_ended).
            self._utterance_turn = s.next_turn_id()
            self._speech_ended_at = None
            s.emit(self._utterance_turn, speech_started=event.speech_started)
            if self._barge_in:
                s.barge_in()
        elif kind == "speech_ended":
            self._speech_ended_at = time.monotonic()
            s.emit(self._turn_id(), speech_ended=event.speech_ended)
        elif kind == "result":
            await self._on_result(event)

    def _turn_id(self) -> int:
        if not self._utterance_turn:
            self._utterance_turn = self.session.next_turn_id()
        return self._utterance_turn

    async def _on_result(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        result, turn_id = event.result, self._turn_id()
        self.session.emit(
            turn_id,
            transcript=gw.Transcript(
                is_final=result.is_final,
                text=result.text,
                language=result.language,
                audio_processed_ms=event.audio_processed_ms,
            ),
        )
        if not result.is_final:
            return
        self._utterance_turn = 0
        now = time.monotonic()
        t0 = self._speech_ended_at or now
        if not result.text.strip():
            self.session.end_turn(turn_id, Reason.REASON_EMPTY)
            return
        await self.session.start_turn(turn_id, result.text, t0, stt_final_s=now - t0)

    async def end_utterance(self) -> None:
        """Half-close the STT stream: it finalizes what it has heard."""
        if self._audio is not None:
            await self._audio.put(_END)
            self._audio = None

    async def finish(self) -> None:
        """End of the client's stream: finalize what was heard, wait for the last result."""
        await self.end_utterance()
        if self._reader is not None:
            await asyncio.wait({self._reader})

    def cancel(self) -> None:
        """Stop listening now (the STT call is cancelled as the reader unwinds)."""
        if self._reader is not None:
            self._reader.cancel()

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The task reading the current or last STT stream; None before any audio."""
        return self._reader
