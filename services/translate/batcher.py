"""Dynamic micro-batching: sentences from concurrent requests share one engine call.

One engine call runs at a time, in a worker thread; sentences that arrive meanwhile wait and
go together in the next call (up to `max_batch`, same beam size, oldest first). When the
engine is free, the `BatchPolicy` says whether to go now or wait a few ms for company:

- a lone caller goes at once, so a conversation that translates one sentence after another
  never waits for a window;
- right after an engine call, the batcher waits a little (`window_s`, or a tenth of that
  call's duration if longer) for the callers it served to come back with their next
  request, and goes as soon as they all have. Concurrent callers thus keep sharing calls
  instead of splitting into cohorts that take turns on the engine (with 16 clients, a
  cohort of 1 and one of 15 alternating cost a whole extra call per round).

Each caller awaits its own futures; a caller that goes away (cancelled RPC) has its
sentences dropped from the queue, or its results discarded, without touching the others.
A failed engine call is retried in halves (`run_isolated`) until the failing sentences are
alone, so one caller's bad input fails that caller only, never the others batched with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.runtime.aio import Dispatcher
from services.translate import metrics
from services.translate.engine import Job, Output

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Job], int], list[Output]]


def run_isolated(run: RunBatch, jobs: list[Job], beam: int) -> list[Output | Exception]:
    """`run(jobs, beam)`; if it fails, each half again, down to single jobs, so that only
    the jobs that fail on their own get an exception (blocking; in the worker thread)."""
    try:
        outputs = run(jobs, beam)
        if len(outputs) != len(jobs):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(jobs)} jobs")
        return list(outputs)
    except Exception as exc:
        if len(jobs) == 1:
            log.warning(
                "translation of one sentence (%d characters) failed: %r", len(jobs[0].text), exc
            )
            metrics.FAILED_SENTENCES.inc()
            return [exc]
    half = len(jobs) // 2
    return [*run_isolated(run, jobs[:half], beam), *run_isolated(run, jobs[half:], beam)]


@dataclass(frozen=True)
class LastCall:
    """The last engine call: when it ended, how long it took, and how many distinct
    callers to expect next (those it served plus those already waiting when it ended)."""

    end: float = -math.inf
    duration: float = 0.0
    expected: int = 0


@dataclass(frozen=True)
class BatchPolicy:
    """When to dispatch (module docstring): at most `max_batch` sentences per engine call; after
    a call, wait `window_s` seconds, or `window_fraction` of that call's duration if longer, for
    its callers to come back (`window_s` 0: never wait)."""

    max_batch: int = 32  # sentences per engine call
    window_s: float = 0.005  # 0: never wait
    window_fraction: float = 0.1  # of the last call's duration, when that is longer

    def merge_s(self, last: LastCall) -> float:
        """How long after `last` ended to wait for its callers to come back."""
        if self.window_s <= 0:
            return 0.0
        return max(self.window_s, self.window_fraction * last.duration)

    def wait_s(self, pending: int, callers: int, last: LastCall, now: float) -> float:
        """0 to dispatch the `pending` sentences (from `callers` requests) now, else the
        longest time to wait before deciding again."""
        if pending == 0:
            return math.inf
        if pending >= self.max_batch or callers >= last.expected:
            return 0.0
        return max(0.0, last.end + self.merge_s(last) - now)


@dataclass
class _Entry:
    job: Job
    beam: int
    caller: object
    future: asyncio.Future[Output]
    queued: float = field(default_factory=time.monotonic)
    started: float = 0.0


class MicroBatcher:
    """Queues sentences from concurrent requests and runs them through `run` (the engine's
    `translate`, in a worker thread) one call at a time, as `policy` says (module docstring)."""

    def __init__(self, run: RunBatch, policy: BatchPolicy) -> None:
        self._run, self.policy = run, policy
        self._pending: list[_Entry] = []
        self._last = LastCall()
        self._dispatcher = Dispatcher("batcher", self._wait_s, self._take, self._execute)

    @property
    def queued(self) -> int:
        """Sentences waiting for an engine call (cancelled ones until the next look)."""
        return sum(not e.future.done() for e in self._pending)

    async def submit(self, jobs: Sequence[Job], beam: int) -> tuple[list[Output], float]:
        """Outputs for `jobs`, in order, and the longest time one of them waited in queue."""
        self._dispatcher.start()
        loop, caller = asyncio.get_running_loop(), object()
        entries = [_Entry(job, beam, caller, loop.create_future()) for job in jobs]
        self._pending.extend(entries)
        self._dispatcher.poke()
        try:
            outputs = await asyncio.gather(*(e.future for e in entries))
        finally:
            self._drop(entries)
        return list(outputs), max((e.started - e.queued for e in entries), default=0.0)

    def _drop(self, entries: list[_Entry]) -> None:
        for entry in entries:
            entry.future.cancel()  # no-op if resolved; else it leaves the queue at `_take`

    def stop_threadsafe(self) -> None:
        """Stop the dispatcher, from any thread (the runtime closes services in a worker
        thread, after draining: no caller is left waiting)."""
        self._dispatcher.stop_threadsafe()

    def _wait_s(self) -> float:
        self._pending = [e for e in self._pending if not e.future.done()]
        callers = len({e.caller for e in self._pending})
        return self.policy.wait_s(len(self._pending), callers, self._last, time.monotonic())

    def _take(self) -> list[_Entry]:
        """Oldest first: up to max_batch live sentences with the oldest one's beam size."""
        live = [e for e in self._pending if not e.future.done()]
        if not live:
            self._pending = []
            return []
        beam = live[0].beam
        batch = [e for e in live if e.beam == beam][: self.policy.max_batch]
        taken = {id(e) for e in batch}
        self._pending = [e for e in live if id(e) not in taken]
        return batch

    async def _execute(self, batch: list[_Entry]) -> None:
        start = time.monotonic()
        for entry in batch:
            entry.started = start
            metrics.BATCH_WAIT.observe(start - entry.queued)
        served = {e.caller for e in batch}
        try:
            outputs = await asyncio.to_thread(
                run_isolated, self._run, [e.job for e in batch], batch[0].beam
            )
        except Exception as exc:  # run_isolated itself failed: every caller gets the error
            outputs = [exc] * len(batch)
        finally:
            waiting = {e.caller for e in self._pending if not e.future.done()}
            end = time.monotonic()
            self._last = LastCall(end, end - start, len(served | waiting))
        done = [o for o in outputs if isinstance(o, Output)]
        if done:
            metrics.observe_batch(done, len(served), self._last.duration)
        for entry, output in zip(batch, outputs, strict=True):
            if entry.future.done():  # a cancelled caller's result is dropped
                continue
            if isinstance(output, Exception):
                entry.future.set_exception(output)
            else:
                entry.future.set_result(output)
