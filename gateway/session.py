"""One Converse stream: reads the client's messages, runs turns, and feeds the outbox.

Voice in goes to a StreamingRecognize call opened on the first audio; its events become
transcript events, and each final transcript starts a turn. Speech from the user during a
reply (STT speech-started, or a BARGE_IN control) cancels the reply at once. One turn runs
at a time. Client mistakes after the config (a second config, an unknown control, an
oversize chunk) get an in-band INVALID_ARGUMENT error and the stream goes on; audio before
the config ends the stream with INVALID_ARGUMENT.

Every turn ends in `end_turn`, whatever ended it (completed, barged in, cancelled, failed,
an empty transcript, the STT stream lost, the client gone): it sends the turn's last events
and counts it in milo_gateway_turns. A session never outlives the task that reads its
events: `bind` ties it to that task, so a client that goes away (its RPC cancelled, its
socket reset) cancels the turn, and so the LLM and TTS calls, even if the reader's own
cleanup never runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from gateway import metrics
from gateway.config import GatewaySettings
from gateway.listener import Listener
from gateway.outbox import Outbox
from gateway.turn import SessionOptions, StageFailure, Turn
from gateway.upstream import Upstream
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2

log = logging.getLogger(__name__)
Reason = gw.TurnEnded.Reason
_UNWIND_S = 5.0  # how long closing waits for a session's tasks to end


def stt_config(config: gw.SessionConfig, options: SessionOptions) -> stt_pb2.StreamingConfig:
    """The STT stream's config for a session."""
    return stt_pb2.StreamingConfig(
        format=config.input_format,
        recognition=stt_pb2.RecognitionConfig(language=options.user_language),
        vad=config.vad,
        partial_results=config.partial_results if config.HasField("partial_results") else True,
    )


class Session:
    """One conversation: `config` is the client's first message, `options` the settings
    drawn from it (`gateway.core.session_options`). `id` is 12 hex digits; `history` holds
    the pivot-language messages of the last `max_history_turns` turns."""

    def __init__(
        self,
        settings: GatewaySettings,
        upstream: Upstream,
        config: gw.SessionConfig,
        options: SessionOptions,
    ) -> None:
        self.settings, self.upstream, self.config, self.options = (
            settings,
            upstream,
            config,
            options,
        )
        self.id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(self._commit_history, options.audio_out)
        self.history: list[llm_pb2.Message] = []
        self._pending_user: dict[int, str] = {}
        self._turns = 0
        self._task: asyncio.Task[None] | None = None
        self._turn: Turn | None = None
        self._awaiting_reply: Turn | None = None
        self._pump: asyncio.Task[None] | None = None
        self._bound: asyncio.Task[Any] | None = None
        self.closed = False
        self.listener = Listener(self, upstream, stt_config(config, options), options.barge_in)

    @property
    def turns(self) -> int:
        """How many turn ids have been given out (turns started, including failed ones)."""
        return self._turns

    # ---- ids, events --------------------------------------------------------------------

    def next_turn_id(self) -> int:
        """A new turn id: 1, 2, ... (0 is for session-wide events)."""
        self._turns += 1
        return self._turns

    def emit(self, turn_id: int, **event: object) -> None:
        """Queue one event for the client, e.g. emit(3, transcript=gw.Transcript(...))."""
        self.outbox.put(gw.ConverseResponse(turn_id=turn_id, **event))  # type: ignore[arg-type]

    def gateway_error(self, message: str) -> None:
        """An in-band INVALID_ARGUMENT error at STAGE_GATEWAY (turn 0); the stream goes on."""
        self.emit(
            0, error=gw.TurnError(stage=gw.STAGE_GATEWAY, code="INVALID_ARGUMENT", message=message)
        )

    @property
    def replying(self) -> bool:
        """True while a turn's task is running."""
        return self._task is not None and not self._task.done()

    # ---- client messages ----------------------------------------------------------------

    async def handle(self, request: gw.ConverseRequest) -> None:
        """Act on one client message after the config: audio to STT, text or a reply to a
        new turn, a control to `control`; a mistake (oversize chunk, second config, empty
        message) gets an in-band error and is dropped."""
        kind = request.WhichOneof("request")
        if kind == "audio":
            if len(request.audio) > self.settings.max_audio_chunk_bytes:
                self.gateway_error(
                    f"audio chunk of {len(request.audio)} bytes is over the limit"
                    f" of {self.settings.max_audio_chunk_bytes}; chunk dropped"
                )
                return
            await self.listener.feed(request.audio)
        elif kind == "text":
            await self.start_turn(self.next_turn_id(), request.text.text, time.monotonic())
        elif kind == "reply":
            await self.start_reply(request.reply.text)
        elif kind == "control":
            await self.control(request.control.action)
        elif kind == "config":
            self.gateway_error("the session is already configured: a second config is ignored")
        else:
            self.gateway_error("empty message: set one of config, audio, text, reply, control")

    async def control(self, action: int) -> None:
        """Apply a Control.Action: BARGE_IN, CANCEL (the reply ends as REASON_CANCELLED) or
        END_OF_UTTERANCE; any other value gets an in-band error."""
        if action == gw.Control.ACTION_BARGE_IN:
            self.barge_in()
        elif action == gw.Control.ACTION_CANCEL:
            self.barge_in(reason=Reason.REASON_CANCELLED)
        elif action == gw.Control.ACTION_END_OF_UTTERANCE:
            await self.listener.end_utterance()
        else:
            self.gateway_error(
                f"unknown control action {action}: expected BARGE_IN, END_OF_UTTERANCE or CANCEL"
            )

    # ---- turns --------------------------------------------------------------------------

    def barge_in(self, reason: int = Reason.REASON_BARGED_IN) -> None:
        """Stop the reply in progress at once; no further audio of it is sent. A turn is
        stopped once: a second barge-in while it winds down does nothing."""
        turn, task = self._turn, self._task
        if turn is None or task is None or task.done():
            return
        self._turn = None
        task.cancel()
        self.outbox.stop_reply(turn.id)
        metrics.BARGE_INS.inc()
        if reason == Reason.REASON_BARGED_IN:
            self.emit(turn.id, barged_in=gw.BargedIn())
        self.end_turn(turn.id, reason, turn=turn)

    async def start_turn(
        self, turn_id: int, text: str, t0: float, stt_final_s: float | None = None
    ) -> None:
        """Start a turn on the user's `text` (user language) once the previous one is over;
        `t0` (time.monotonic(), s) is where its latency is measured from, `stt_final_s` the
        seconds from end of speech to the final transcript."""
        self._drop_awaited_reply()
        await self._settle()
        turn = self._new_turn(turn_id, t0)
        if stt_final_s is not None:
            turn.timings.stage("stt_final", stt_final_s)
        self._run(turn, self._user_turn(turn, text))

    async def start_reply(self, text: str) -> None:
        """BRAIN_CLIENT: the client's reply (pivot language) is translated and spoken."""
        await self._settle()
        turn = self._awaiting_reply or self._new_turn(self.next_turn_id(), time.monotonic())
        self._awaiting_reply = None
        self._run(turn, self._speak_turn(turn, _once(text)))

    def _drop_awaited_reply(self) -> None:
        """BRAIN_CLIENT: a turn whose reply never came ends when the next one starts."""
        turn, self._awaiting_reply = self._awaiting_reply, None
        if turn is not None:
            self.end_turn(turn.id, Reason.REASON_CANCELLED, turn=turn)

    async def _settle(self) -> None:
        """Before a new turn: stop the reply in progress (or, without barge-in, let it end),
        and let a stopped turn finish winding down, so turns never overlap."""
        task = self._task
        if task is None or task.done():
            return
        if self.options.barge_in:
            self.barge_in()
        await asyncio.wait({task})

    def _new_turn(self, turn_id: int, t0: float) -> Turn:
        return Turn(turn_id, self.options, self.upstream, self.settings, self.outbox.put, t0)

    def _run(self, turn: Turn, body: Coroutine[Any, Any, None]) -> None:
        if self.closed:  # the client is gone: no new turn
            body.close()
            return
        self._turn = turn
        self._task = asyncio.create_task(self._guard(turn, body))

    async def _guard(self, turn: Turn, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except StageFailure as failure:
            self.end_turn(turn.id, Reason.REASON_ERROR, failure, turn=turn)
        except asyncio.CancelledError:
            if self._turn is turn:  # not barged in: the session is closing
                self._turn = None
                self.end_turn(turn.id, Reason.REASON_CANCELLED, turn=turn)
            raise

    async def _user_turn(self, turn: Turn, text: str) -> None:
        pivot = await turn.to_pivot(text)
        if self.options.client_brain:
            self._awaiting_reply = turn  # the client answers with ReplyText
            return
        self._pending_user[turn.id] = pivot
        messages = self._messages(pivot)
        await self._speak_turn(turn, turn.llm_deltas(messages))

    async def _speak_turn(self, turn: Turn, deltas: AsyncIterator[str]) -> None:
        await turn.speak(deltas)
        self._turn = None
        self.end_turn(turn.id, Reason.REASON_COMPLETED, turn=turn)

    def end_turn(
        self,
        turn_id: int,
        reason: int,
        failure: StageFailure | None = None,
        turn: Turn | None = None,
    ) -> None:
        """The one place a turn ends: its error (if it failed), its latency breakdown (if
        it got as far as a Turn), TurnEnded, and the turn metrics."""
        if failure is not None:
            log.info(
                "session %s turn %d failed at %s: %s",
                self.id,
                turn_id,
                gw.Stage.Name(failure.stage),
                failure.message,
            )  # type: ignore[arg-type]
            metrics.TURN_ERRORS.labels(
                gw.Stage.Name(failure.stage),  # type: ignore[arg-type]
                failure.code,
            ).inc()
            self.emit(
                turn_id,
                error=gw.TurnError(stage=failure.stage, code=failure.code, message=failure.message),
            )
        if turn is not None:
            latency = turn.latency()
            self.emit(turn_id, latency=latency)
            metrics.TURN_SECONDS.observe(latency.turn_total_ms / 1000)
        self.emit(turn_id, turn_ended=gw.TurnEnded(reason=reason))  # type: ignore[arg-type]
        metrics.TURNS.labels(Reason.Name(reason)).inc()  # type: ignore[arg-type]

    # ---- history ------------------------------------------------------------------------

    def _messages(self, pivot: str) -> list[llm_pb2.Message]:
        messages = []
        if self.options.system_prompt:
            messages.append(
                llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM, content=self.options.system_prompt)
            )
        keep = self.options.max_history_turns * 2
        messages.extend(self.history[-keep:] if keep else [])
        messages.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=pivot))
        return messages

    def _commit_history(self, turn_id: int, sentences: list[str]) -> None:
        """Called as a turn's end is sent: keep the user's words and what was really said."""
        user = self._pending_user.pop(turn_id, None)
        if user is None:
            return
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=user))
        self.history.append(
            llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=" ".join(sentences))
        )
        del self.history[: max(0, len(self.history) - 2 * max(1, self.options.max_history_turns))]

    def go_away(self, reason: str, deadline_ms: int) -> None:
        """The gateway drains: tell the client to continue on a new stream (the
        `reconnect` event); turns in flight and what the client still sends go on."""
        log.info("session %s: told to reconnect (%s)", self.id, reason)
        self.emit(0, reconnect=gw.Reconnect(reason=reason, deadline_ms=deadline_ms))

    def cut(self) -> None:
        """The drain's grace is over: stop the turn in progress and end the stream."""
        self.barge_in(reason=Reason.REASON_CANCELLED)
        self.cancel()

    # ---- lifetime -----------------------------------------------------------------------

    def run(self, requests: AsyncIterator[gw.ConverseRequest]) -> None:
        """Start reading the client's messages; events come out of `self.outbox`."""
        self._pump = asyncio.create_task(self._read(requests))

    async def _read(self, requests: AsyncIterator[gw.ConverseRequest]) -> None:
        try:
            async for request in requests:
                await self.handle(request)
            await self.finish()
        finally:
            self.outbox.close()

    async def finish(self) -> None:
        """The client half-closed: let the last utterance and the turn in progress finish."""
        await self.listener.finish()
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def wait_read(self) -> None:
        """Wait for the reading of the client's messages to end; raise what ended it (not
        a cancellation by `cancel`)."""
        pump = self._pump
        if pump is None:
            return
        await asyncio.wait({pump})
        if not pump.cancelled() and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]

    def bind(self, task: asyncio.Task[Any] | None) -> None:
        """The session ends, at the latest, when `task` (the one reading its events) does."""
        if task is not None:
            task.add_done_callback(self._reader_done)
            self._bound = task

    def _reader_done(self, _task: asyncio.Task[Any]) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Stop everything now: reading, listening and the turn in progress (which cancels
        its LLM and TTS calls). Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self._drop_awaited_reply()
        for task in (self._pump, self._task):
            if task is not None:
                task.cancel()
        self.listener.cancel()
        self.outbox.close()

    async def close(self) -> None:
        """`cancel`, then wait until every task has unwound (its upstream calls cancelled)."""
        self.cancel()
        if self._bound is not None:  # a long-lived reader task keeps no closed session
            self._bound.remove_done_callback(self._reader_done)
            self._bound = None
        tasks = {t for t in (self._pump, self._task, self.listener.reader) if t is not None}
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=_UNWIND_S)
            if stuck:
                log.warning(
                    "session %s: %d tasks still unwinding after %gs", self.id, len(stuck), _UNWIND_S
                )


async def _once(text: str) -> AsyncIterator[str]:
    yield text
