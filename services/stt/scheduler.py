"""How concurrent requests and streams share the one model.

One model per process. Every decode (a Recognize, a streaming partial, a streaming final)
is a job in one priority queue, served by `workers` threads (= the engine's CTranslate2
workers, which share the weights); the event loop never blocks on a decode.

Fairness and bounds:
- Urgent jobs (Recognize and utterance finals) go first, in arrival order (FIFO), so no
  stream or client can jump the line.
- Partials are best effort: each stream has at most one partial waiting (a newer one
  replaces it: `run_latest`), so a slow model never builds a backlog of stale partials,
  and a stream's pending partial is dropped when its utterance ends.
- How many streams and requests hold the model at all is bounded by the runtime's admission
  control (max_concurrency, then a bounded FIFO queue, then RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.stt import metrics

T = TypeVar("T")
URGENT, BEST_EFFORT = 0, 1


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    key: Hashable | None = field(compare=False, default=None)


class DecodeScheduler:
    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stt-decode")
        self._heap: list[_Job] = []
        self._latest: dict[Hashable, _Job] = {}
        self._seq = itertools.count()
        self._busy = 0

    @property
    def pending(self) -> int:
        return sum(1 for job in self._heap if not job.future.done())

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a decode thread, ahead of every best-effort job."""
        return await self._submit(URGENT, fn, None)  # type: ignore[no-any-return]

    async def run_latest(self, key: Hashable, fn: Callable[[], T]) -> T | None:
        """Best effort: None if a newer job with the same key (or `drop(key)`) replaced it
        before it started."""
        self.drop(key)
        return await self._submit(BEST_EFFORT, fn, key)  # type: ignore[no-any-return]

    def drop(self, key: Hashable) -> None:
        """Forget the waiting best-effort job of `key`, if any (a running one finishes)."""
        job = self._latest.pop(key, None)
        if job is not None and not job.future.done():
            job.future.set_result(None)

    def _submit(self, priority: int, fn: Callable[[], Any], key: Hashable | None
                ) -> asyncio.Future[Any]:
        job = _Job(priority, next(self._seq), fn, asyncio.get_running_loop().create_future(), key)
        if key is not None:
            self._latest[key] = job
        heapq.heappush(self._heap, job)
        self._dispatch()
        return job.future

    def _dispatch(self) -> None:
        while self._busy < self.workers and self._heap:
            job = heapq.heappop(self._heap)
            if job.key is not None and self._latest.get(job.key) is job:
                del self._latest[job.key]
            if job.future.done():  # replaced, dropped, or its caller went away
                continue
            self._busy += 1
            done = asyncio.get_running_loop().run_in_executor(self._pool, job.fn)
            done.add_done_callback(functools.partial(self._finished, job))
        metrics.DECODE_QUEUE.set(self.pending)
        metrics.DECODE_BUSY.set(self._busy)

    def _finished(self, job: _Job, done: asyncio.Future[Any]) -> None:
        self._busy -= 1
        if not job.future.done():
            if done.cancelled():
                job.future.cancel()
            elif done.exception() is not None:
                job.future.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                job.future.set_result(done.result())
        self._dispatch()

    def close(self) -> None:
        """Wait for running decodes; called after the server stopped taking calls."""
        self._pool.shutdown(wait=True, cancel_futures=True)
