"""`milo loadtest conversation`: simulated people holding conversations with the gateway.

Each person opens one Converse stream and, turn after turn, speaks an utterance into it at
real-time pace (as a microphone would: a chunk leaves once it has been recorded), followed
by silence so that the VAD ends it (or types a text, with --text-input); reads every event
of the reply, playing its audio as a player would (see `player.py`); then thinks (a random
pause around --think-time) and speaks again. Nothing is sent while the reply plays (a
push-to-talk client). Levels (--clients 1,2,4,8) run one after the other, each with N
people doing --turns turns, their first words spread over one think time.

Per turn: end of speech (the last chunk of speech sent, or the text) to the first reply
audio and to the end of the turn; the stages of the gateway's latency breakdown; whether
the audio glitched; whether a reply started before the user finished speaking; the error
code of a failed turn (the TurnError's code, the stream's status, NO_REPLY when nothing was
recognized, NO_AUDIO, TIMEOUT when the turn did not end within --timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from services.loadtest.audio import Speech, paced
from services.loadtest.player import Playback, play
from services.loadtest.stt import pcm_format
from services.loadtest.target import TargetOptions

Payload = Speech | str


@dataclass(frozen=True)
class Plan:
    """How each person behaves."""

    turns: int = 3
    think_s: float = 2.0  # mean pause between the end of a reply and the next utterance
    timeout_s: float = 60.0  # end of speech to the end of the turn, at most
    buffer_ms: float = 100.0  # the player's jitter buffer
    seed: int = 0


@dataclass
class TurnRecord:
    """One turn as the person saw it."""

    person: int
    code: str = "OK"
    message: str = ""
    first_audio_s: float | None = None  # end of speech to the first reply audio
    turn_s: float | None = None  # end of speech to the end of the turn
    stages_ms: dict[str, float] = field(default_factory=dict)
    playback: Playback | None = None
    early: bool = False  # reply audio came while the person was still speaking

    @property
    def ok(self) -> bool:
        """True when the turn ended without an error."""
        return self.code == "OK"


@dataclass
class TurnView:
    """The events of one turn id, as they arrive."""

    chunks: list[tuple[float, float]] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    reason: int = 0
    ended_at: float = 0.0
    early: bool = False


def stages_of(latency: gw.LatencyBreakdown) -> dict[str, float]:
    """The breakdown's stage times in ms, by name without the `_ms` suffix."""
    return {
        f.name.removesuffix("_ms"): float(v)
        for f, v in latency.ListFields()
        if f.name.endswith("_ms")
    }


class Session:
    """One Converse stream; events are gathered per turn id by a reader task."""

    def __init__(
        self,
        stub: gateway_pb2_grpc.ConversationStub,
        config: gw.SessionConfig,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self.outgoing: asyncio.Queue[gw.ConverseRequest | None] = asyncio.Queue()
        self.outgoing.put_nowait(gw.ConverseRequest(config=config))
        self.call = stub.Converse(self._requests(), metadata=tuple(metadata))
        self.turns: dict[int, TurnView] = {}
        self.ended: asyncio.Queue[TurnView | None] = asyncio.Queue()
        self.failure: grpc.aio.AioRpcError | None = None
        self.speaking = False
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[gw.ConverseRequest]:
        while (item := await self.outgoing.get()) is not None:
            yield item

    def send(self, **fields: Any) -> None:
        """Queue one ConverseRequest built from `fields` for the stream."""
        self.outgoing.put_nowait(gw.ConverseRequest(**fields))

    async def _read(self) -> None:
        try:
            async for event in self.call:
                self._see(event, time.monotonic())
        except grpc.aio.AioRpcError as exc:
            self.failure = exc
        finally:
            self.ended.put_nowait(None)

    def _see(self, event: gw.ConverseResponse, now: float) -> None:
        if not event.turn_id:
            return
        view = self.turns.setdefault(event.turn_id, TurnView())
        kind = event.WhichOneof("event")
        if kind == "audio":
            view.early |= not view.chunks and self.speaking
            view.chunks.append((now, event.audio.chunk.duration_ms / 1000))
        elif kind == "latency":
            view.stages_ms = stages_of(event.latency)
        elif kind == "error":
            stage = gw.Stage.Name(event.error.stage)
            view.error = (event.error.code or "UNKNOWN", f"{stage}: {event.error.message}")
        elif kind == "turn_ended":
            view.reason, view.ended_at = event.turn_ended.reason, now
            self.ended.put_nowait(view)

    async def close(self) -> None:
        """End the stream and wait for its reader task."""
        self.outgoing.put_nowait(None)
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def session_config(payload: Payload, options: TargetOptions) -> gw.SessionConfig:
    """The session's SessionConfig: language and voice from `options`, the PCM format for a
    speech payload, and max_tokens when given."""
    config = gw.SessionConfig(user_language=options.language, voice=options.voice)
    if isinstance(payload, Speech):
        config.input_format.CopyFrom(pcm_format(payload))
    if options.max_tokens is not None:
        config.sampling.CopyFrom(llm_pb2.SamplingOptions(max_tokens=options.max_tokens))
    return config


class Person:
    """One simulated person: a session, turn after turn."""

    def __init__(
        self,
        index: int,
        stub: gateway_pb2_grpc.ConversationStub,
        payloads: Sequence[Payload],
        options: TargetOptions,
        plan: Plan,
    ) -> None:
        self.index, self.stub, self.options, self.plan = index, stub, options, plan
        self.payloads = [payloads[(index + i) % len(payloads)] for i in range(len(payloads))]
        self.rng = random.Random(plan.seed * 7919 + index)
        self.session: Session | None = None

    async def run(self, turns: int, start_delay_s: float = 0.0) -> list[TurnRecord]:
        """Wait `start_delay_s` seconds, then take `turns` turns, thinking between them (a random
        0.5 to 1.5 times the plan's think time); returns one record per turn."""
        await asyncio.sleep(start_delay_s)
        records = []
        try:
            for i in range(turns):
                if i:
                    await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.plan.think_s)
                records.append(await self.turn(self.payloads[i % len(self.payloads)]))
        finally:
            if self.session is not None:
                await self.session.close()
        return records

    async def turn(self, payload: Payload) -> TurnRecord:
        """Say one utterance (speech or text) and wait for the reply's turn to end; returns what
        the person saw. A failed or timed-out turn closes the session (the next turn opens
        another)."""
        if self.session is None:
            self.session = Session(
                self.stub, session_config(payload, self.options), self.options.metadata
            )
        session, record = self.session, TurnRecord(self.index)
        session.speaking = True
        end_of_speech = await self._say(session, payload)
        session.speaking = False
        tail = asyncio.create_task(self._tail(session, payload))
        try:
            view = await self._wait_turn(session, end_of_speech, record)
        finally:
            tail.cancel()
        if view is None:  # the stream failed or the turn timed out: start afresh
            await session.close()
            self.session = None
            return record
        self._fill(record, view, end_of_speech)
        return record

    async def _say(self, session: Session, payload: Payload) -> float:
        """Send the utterance; returns when its last chunk of speech left."""
        if isinstance(payload, str):
            session.send(text=gw.UserText(text=payload))
            return time.monotonic()
        o = self.options
        async for chunk in paced(payload.chunks(o.chunk_ms), o.chunk_ms / 1000, o.audio_pace):
            session.send(audio=chunk)
        return time.monotonic()

    async def _tail(self, session: Session, payload: Payload) -> None:
        """Silence after the speech, in real time, until the turn ends (a microphone stays
        open: the VAD ends the utterance on it and the recognizer finalizes it)."""
        if not isinstance(payload, Speech):
            return
        o = self.options
        silence = payload.silence(o.chunk_ms)
        while True:
            async for chunk in paced([silence] * 50, o.chunk_ms / 1000, o.audio_pace or 1.0):
                session.send(audio=chunk)

    async def _wait_turn(
        self, session: Session, end_of_speech: float, record: TurnRecord
    ) -> TurnView | None:
        """The turn that ends after the end of speech (earlier ones: the utterance was cut
        in two, a reply came too early)."""
        deadline = end_of_speech + self.plan.timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    view = await session.ended.get()
            except TimeoutError:
                record.code, record.message = "TIMEOUT", "the turn did not end in time"
                return None
            if view is None:
                failure = session.failure
                record.code = failure.code().name if failure is not None else "STREAM_ENDED"
                record.message = (
                    (failure.details() or "")
                    if failure is not None
                    else "the gateway ended the stream"
                )
                return None
            record.early |= view.early
            if view.ended_at >= end_of_speech:
                return view

    def _fill(self, record: TurnRecord, view: TurnView, end_of_speech: float) -> None:
        record.early |= view.early
        record.turn_s = view.ended_at - end_of_speech
        record.stages_ms = view.stages_ms
        if view.chunks:
            record.first_audio_s = max(0.0, view.chunks[0][0] - end_of_speech)
            record.playback = play(view.chunks, self.plan.buffer_ms)
        if view.error is not None:
            record.code, record.message = view.error
        elif view.reason == gw.TurnEnded.REASON_EMPTY:
            record.code, record.message = "NO_REPLY", "no speech was recognized"
        elif view.reason != gw.TurnEnded.REASON_COMPLETED:
            record.code = gw.TurnEnded.Reason.Name(view.reason).removeprefix("REASON_")
        elif not view.chunks:
            record.code, record.message = "NO_AUDIO", "the turn completed without audio"


async def run_level(
    stub: gateway_pb2_grpc.ConversationStub,
    clients: int,
    payloads: Sequence[Payload],
    options: TargetOptions,
    plan: Plan,
) -> tuple[list[TurnRecord], float]:
    """`clients` people at once, each doing `plan.turns` turns; the records and wall time."""
    rng = random.Random(plan.seed + clients)
    people = [Person(i, stub, payloads, options, plan) for i in range(clients)]
    start = time.monotonic()
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(p.run(plan.turns, rng.uniform(0, plan.think_s) if i else 0))
            for i, p in enumerate(people)
        ]
    return [r for t in tasks for r in t.result()], time.monotonic() - start
