"""Batched synthesis across requests: segments (sentences or clauses) of different requests
that wait at the same moment go through the model as one padded batch.

Each request is a `Caller` that submits its segments one at a time, in order, and awaits
each one's samples, so its chunks stay in order and its first chunk leaves as soon as its
first segment is done. One model call runs at a time, in a worker thread. When the model
is free, the next batch is taken:

- oldest first, at most one segment per caller, up to `max_batch`: no caller waits behind
  another's whole reply (a long reply gives one segment per batch, like everybody else),
  and no caller starves (a waiting segment is in the next batch or, when more than
  `max_batch` callers wait, in one of the next few, in arrival order);
- it goes at once when every open caller has a segment waiting (a lone request never
  waits), or when it is full; else it waits at most `window_s` after its oldest segment
  arrived for the other open callers (those whose previous segment just came back) to
  submit their next one.

An engine without `synthesize_batch` is called once per segment. If a batch fails, its
segments are synthesized one by one, so a bad segment fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.runtime.aio import Dispatcher
from services.tts import metrics
from services.tts.audio import Samples
from services.tts.engine import Segment, SpeechEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    """At most `max_batch` segments per model call; a batch waits at most `window_s` seconds
    after its oldest segment for the other open callers (0: never wait)."""

    max_batch: int = 8  # segments per model call
    window_s: float = 0.005  # 0: never wait for company

    def wait_s(self, waiting: int, open_callers: int, oldest_wait_s: float) -> float:
        """0 to go now with `waiting` segments (one per caller) of `open_callers`, else how
        long to wait for the others before deciding again."""
        if waiting >= min(self.max_batch, open_callers) or self.window_s <= 0:
            return 0.0
        return max(0.0, self.window_s - oldest_wait_s)


@dataclass
class _Entry:
    caller: Caller
    segment: Segment
    future: asyncio.Future[Samples]
    queued: float = field(default_factory=time.monotonic)


class Caller:
    """One request's handle on the batcher; close it when the request ends."""

    def __init__(self, batcher: SynthesisBatcher) -> None:
        self._batcher = batcher

    async def synthesize(self, segment: Segment) -> Samples:
        """The segment's float32 samples at the model's rate, once its batch has run; raises what
        the engine raised for this segment."""
        return await self._batcher.submit(self, segment)

    def close(self) -> None:
        """Leave the batcher: batches stop waiting for this caller."""
        self._batcher.leave(self)


class SynthesisBatcher:
    """Batches segments of concurrent requests into one model call (module docstring); each
    request `join`s as a Caller."""

    def __init__(self, engine: SpeechEngine, policy: BatchPolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy or BatchPolicy()
        self._callers: set[Caller] = set()
        self._pending: list[_Entry] = []
        self._dispatcher = Dispatcher("tts-batcher", self._wait_s, self._take, self._run)
        self.in_flight = 0  # segments in the model call now running

    @property
    def waiting(self) -> int:
        """Segments waiting for a model call (cancelled ones until the next look)."""
        return sum(not e.future.done() for e in self._pending)

    def join(self) -> Caller:
        """A new Caller for one request; batches wait for it until it is closed."""
        caller = Caller(self)
        self._callers.add(caller)
        self._dispatcher.poke()
        return caller

    def leave(self, caller: Caller) -> None:
        """Forget `caller` (what `Caller.close` does)."""
        self._callers.discard(caller)
        self._dispatcher.poke()

    async def submit(self, caller: Caller, segment: Segment) -> Samples:
        """Queue one of `caller`'s segments and await its samples; a cancelled wait takes the
        segment out of the queue."""
        self._dispatcher.start()
        entry = _Entry(caller, segment, asyncio.get_running_loop().create_future())
        self._pending.append(entry)
        self._dispatcher.poke()
        try:
            return await entry.future
        finally:
            entry.future.cancel()  # no-op once resolved; else it leaves the queue

    def stop_threadsafe(self) -> None:
        """Stop the dispatcher, from any thread (the runtime closes services in a worker
        thread, after draining: no caller is left waiting)."""
        self._dispatcher.stop_threadsafe()

    def _wait_s(self) -> float | None:
        """0 to take a batch now, else how long to wait (None: until a segment comes)."""
        self._pending = [e for e in self._pending if not e.future.done()]
        if not self._pending:
            return None
        waiting = {e.caller for e in self._pending}
        return self.policy.wait_s(
            len(waiting), len(self._callers | waiting), time.monotonic() - self._pending[0].queued
        )

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        seen: set[Caller] = set()
        for entry in self._pending:
            if entry.caller not in seen and len(batch) < self.policy.max_batch:
                batch.append(entry)
                seen.add(entry.caller)
        taken = {id(e) for e in batch}
        self._pending = [e for e in self._pending if id(e) not in taken]
        return batch

    async def _run(self, batch: list[_Entry]) -> None:
        start = time.monotonic()
        for entry in batch:
            metrics.QUEUE_WAIT.observe(start - entry.queued)
        metrics.BATCH_SIZE.observe(len(batch))
        self.in_flight = len(batch)
        try:
            results = await asyncio.to_thread(self._synthesize, [e.segment for e in batch])
        finally:
            self.in_flight = 0
        metrics.BATCH_SECONDS.observe(time.monotonic() - start)
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue  # its caller went away
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)

    def _synthesize(self, segments: Sequence[Segment]) -> list[Any]:
        """Worker thread: one batch, else (no batch support, or it failed) one by one."""
        batched = getattr(self.engine, "synthesize_batch", None)
        if batched is not None and len(segments) > 1:
            try:
                out = list(batched(segments))
                if len(out) == len(segments):
                    return out
                log.error(
                    "batched synthesis gave %d results for %d segments; one by one",
                    len(out),
                    len(segments),
                )
            except Exception:
                log.exception("batched synthesis of %d segments failed; one by one", len(segments))
        alone: list[Any] = []
        for s in segments:
            try:
                alone.append(self.engine.synthesize(s.text, s.voice, s.speed, s.seed))
            except Exception as exc:
                alone.append(exc)
        return alone
