"""One Converse stream: reads the client's messages, runs turns, and feeds the outbox.

Voice in goes to a StreamingRecognize call opened on the first audio; its events become
transcript events, and each final transcript starts a turn. Speech from the user during a
reply (STT speech-started, or a BARGE_IN control) cancels the reply at once. One turn runs
at a time. Client mistakes after the config (a second config, an unknown control, an
oversize chunk) get an in-band INVALID_ARGUMENT error and the stream goes on; audio before
the config ends the stream with INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from gateway import metrics
from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.listener import Listener
from gateway.outbox import Outbox
from gateway.turn import SessionOptions, StageFailure, Turn
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2

log = logging.getLogger(__name__)
Reason = gw.TurnEnded.Reason


class Session:
    def __init__(self, settings: GatewaySettings, backends: Backends,
                 config: gw.SessionConfig, options: SessionOptions) -> None:
        self.settings, self.backends, self.config, self.options = (
            settings, backends, config, options)
        self.id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(self._commit_history, options.audio_out)
        self.history: list[llm_pb2.Message] = []
        self._pending_user: dict[int, str] = {}
        self._turns = 0
        self._task: asyncio.Task[None] | None = None
        self._turn: Turn | None = None
        self._awaiting_reply: Turn | None = None
        self.listener = Listener(self)

    # ---- ids, events --------------------------------------------------------------------

    def next_turn_id(self) -> int:
        self._turns += 1
        return self._turns

    def emit(self, turn_id: int, **event: object) -> None:
        self.outbox.put(gw.ConverseResponse(turn_id=turn_id, **event))  # type: ignore[arg-type]

    def gateway_error(self, message: str) -> None:
        self.emit(0, error=gw.TurnError(stage=gw.STAGE_GATEWAY, code="INVALID_ARGUMENT",
                                        message=message))

    @property
    def replying(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- client messages ----------------------------------------------------------------

    async def handle(self, request: gw.ConverseRequest) -> None:
        kind = request.WhichOneof("request")
        if kind == "audio":
            if len(request.audio) > self.settings.max_audio_chunk_bytes:
                self.gateway_error(f"audio chunk of {len(request.audio)} bytes is over the limit"
                                   f" of {self.settings.max_audio_chunk_bytes}; chunk dropped")
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
        if action == gw.Control.ACTION_BARGE_IN:
            self.barge_in()
        elif action == gw.Control.ACTION_CANCEL:
            self.barge_in(reason=Reason.REASON_CANCELLED)
        elif action == gw.Control.ACTION_END_OF_UTTERANCE:
            await self.listener.end_utterance()
        else:
            self.gateway_error(f"unknown control action {action}: expected BARGE_IN, "
                               "END_OF_UTTERANCE or CANCEL")

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
        self._end(turn, reason)

    async def start_turn(self, turn_id: int, text: str, t0: float,
                         stt_final_s: float | None = None) -> None:
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
        return Turn(turn_id, self.options, self.backends, self.settings, self.outbox.put, t0)

    def _run(self, turn: Turn, body: object) -> None:
        self._turn = turn
        self._task = asyncio.create_task(self._guard(turn, body))  # type: ignore[arg-type]

    async def _guard(self, turn: Turn, body: object) -> None:
        try:
            await body  # type: ignore[misc]
        except StageFailure as failure:
            log.info("session %s turn %d failed at %s: %s", self.id, turn.id,
                     gw.Stage.Name(failure.stage), failure.message)
            metrics.TURN_ERRORS.labels(gw.Stage.Name(failure.stage), failure.code).inc()
            self.emit(turn.id, error=gw.TurnError(
                stage=failure.stage, code=failure.code, message=failure.message))
            self._end(turn, Reason.REASON_ERROR)

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
        self._end(turn, Reason.REASON_COMPLETED)

    def _end(self, turn: Turn, reason: int) -> None:
        latency = turn.latency()
        self.emit(turn.id, latency=latency)
        self.emit(turn.id, turn_ended=gw.TurnEnded(reason=reason))  # type: ignore[arg-type]
        metrics.TURNS.labels(Reason.Name(reason)).inc()  # type: ignore[arg-type]
        metrics.TURN_SECONDS.observe(latency.turn_total_ms / 1000)

    # ---- history ------------------------------------------------------------------------

    def _messages(self, pivot: str) -> list[llm_pb2.Message]:
        messages = []
        if self.options.system_prompt:
            messages.append(llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM,
                                            content=self.options.system_prompt))
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
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT,
                                            content=" ".join(sentences)))
        del self.history[: max(0, len(self.history) - 2 * max(1, self.options.max_history_turns))]

    def go_away(self, reason: str, deadline_ms: int) -> None:
        """The gateway drains: tell the client to continue on a new stream (the
        `reconnect` event); turns in flight and what the client still sends go on."""
        log.info("session %s: told to reconnect (%s)", self.id, reason)
        self.emit(0, reconnect=gw.Reconnect(reason=reason, deadline_ms=deadline_ms))

    def cut(self) -> None:
        """The drain's grace is over: stop the turn in progress and end the stream."""
        self.barge_in(reason=Reason.REASON_CANCELLED)
        self.outbox.close()

    async def finish(self) -> None:
        """The client half-closed: let the last utterance and the turn in progress finish."""
        await self.listener.finish()
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.listener.close()
        self.outbox.close()


async def _once(text: str) -> AsyncIterator[str]:
    yield text
