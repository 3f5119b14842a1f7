"""How concurrent requests and streams share the one model.

One model per process. Every decode (a Recognize, a streaming partial, a streaming final)
is a job in one priority queue, served by `workers` threads (= the engine's CTranslate2
workers, which share the weights); the event loop never blocks on a decode.

Fairness and bounds:
- Urgent jobs (Recognize and utterance finals) go first, in arrival order (FIFO), so no
  stream or client can jump the line. Urgent jobs submitted with `run_batched` that share
  a group (the same decoding options) leave together as one batched model call, oldest
  first, up to the policy's `max_batch` (services.stt.batching); each caller gets its own
  result, or its own error.
- Partials are best effort: each stream has at most one partial waiting (a newer one
  replaces it: `run_latest`), so a slow model never builds a backlog of stale partials,
  and a stream's pending partial is dropped when its utterance ends. A partial never
  starts while an urgent job waits.
- How many streams and requests hold the model at all is bounded by the runtime's admission
  control (max_concurrency, then a bounded FIFO queue, then RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.stt import metrics
from services.stt.batching import BatchPolicy, RunBatch

T = TypeVar("T")
URGENT, BEST_EFFORT = 0, 1
_KIND = {URGENT: "urgent", BEST_EFFORT: "best_effort"}


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] | None = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    key: Hashable | None = field(compare=False, default=None)
    group: Hashable | None = field(compare=False, default=None)  # batchable: its options
    item: Any = field(compare=False, default=None)  # batchable: its input
    queued: float = field(compare=False, default_factory=time.monotonic)


class DecodeScheduler:
    """Runs decodes on `workers` threads: urgent ones (finals, Recognize) first, batched by
    options; best-effort ones (partials) after, only the latest per key."""

    def __init__(
        self,
        workers: int = 1,
        run_batch: RunBatch | None = None,
        policy: BatchPolicy | None = None,
        callers: Callable[[], int] = lambda: 0,
    ) -> None:
        """`run_batch(group, items)` runs batchable jobs (blocking, in a worker thread);
        `callers()`: how many streams and Recognize calls are open (for the policy)."""
        self.workers = workers
        self.policy = policy or BatchPolicy()
        self._run_batch, self._callers = run_batch, callers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stt-decode")
        self._heap: list[_Job] = []
        self._latest: dict[Hashable, _Job] = {}
        self._seq = itertools.count()
        self._busy = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Jobs waiting for a decode thread."""
        return sum(1 for job in self._heap if not job.future.done())

    @property
    def busy(self) -> int:
        """Decode threads at work now."""
        return self._busy

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a decode thread, ahead of every best-effort job."""
        return await self._submit(URGENT, fn, None)  # type: ignore[no-any-return]

    async def run_batched(self, group: Hashable, item: Any) -> Any:
        """Urgent: `item`'s result from `run_batch(group, [..., item, ...])`, batched with
        the other waiting items of the same group (alone without a `run_batch`)."""
        if self._run_batch is None:
            raise RuntimeError("this scheduler has no batch runner")
        return await self._submit(URGENT, None, None, group, item)

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

    def _submit(
        self,
        priority: int,
        fn: Callable[[], Any] | None,
        key: Hashable | None,
        group: Hashable | None = None,
        item: Any = None,
    ) -> asyncio.Future[Any]:
        job = _Job(
            priority,
            next(self._seq),
            fn,
            asyncio.get_running_loop().create_future(),
            key,
            group,
            item,
        )
        if key is not None:
            self._latest[key] = job
        heapq.heappush(self._heap, job)
        self._dispatch()
        return job.future

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._busy < self.workers:
            self._discard_done()
            if not self._heap:
                break
            head = self._heap[0]
            if head.group is None:
                self._start([heapq.heappop(self._heap)])
                continue
            batch = self._batch_of(head)
            wait = self.policy.wait_s(
                len(batch), time.monotonic() - head.queued, self._callers() - len(batch)
            )
            if wait > 0:  # hold the model (partials included) for company a little while
                self._timer = asyncio.get_running_loop().call_later(wait, self._dispatch)
                break
            taken = {id(job) for job in batch}
            self._heap = [job for job in self._heap if id(job) not in taken]
            heapq.heapify(self._heap)
            self._start(batch)
        metrics.DECODE_QUEUE.set(self.pending)
        metrics.DECODE_BUSY.set(self._busy)

    def _discard_done(self) -> None:
        """Pop jobs at the head that were replaced, dropped, or whose caller went away."""
        while self._heap and self._heap[0].future.done():
            job = heapq.heappop(self._heap)
            if job.key is not None and self._latest.get(job.key) is job:
                del self._latest[job.key]

    def _batch_of(self, head: _Job) -> list[_Job]:
        same = sorted(
            job for job in self._heap if job.group == head.group and not job.future.done()
        )
        return same[: self.policy.max_batch]

    def _start(self, jobs: list[_Job]) -> None:
        now = time.monotonic()
        for job in jobs:
            if job.key is not None and self._latest.get(job.key) is job:
                del self._latest[job.key]
            metrics.QUEUE_WAIT.labels(_KIND[job.priority]).observe(now - job.queued)
        self._busy += 1
        loop = asyncio.get_running_loop()
        if jobs[0].group is None:
            done = loop.run_in_executor(self._pool, jobs[0].fn)  # type: ignore[arg-type]
            done.add_done_callback(functools.partial(self._finished, jobs[0]))
            return
        metrics.BATCH_SIZE.observe(len(jobs))
        run_batch = self._run_batch
        assert run_batch is not None
        items = [job.item for job in jobs]
        done = loop.run_in_executor(self._pool, run_batch, jobs[0].group, items)
        done.add_done_callback(functools.partial(self._batch_finished, jobs))

    def _finished(self, job: _Job, done: asyncio.Future[Any]) -> None:
        self._busy -= 1
        _settle(job.future, done)
        self._dispatch()

    def _batch_finished(self, jobs: list[_Job], done: asyncio.Future[Any]) -> None:
        self._busy -= 1
        if done.cancelled() or done.exception() is not None:
            for job in jobs:
                _settle(job.future, done)
        else:
            results: Sequence[Any] = done.result()
            if len(results) != len(jobs):
                results = [
                    RuntimeError(f"the batch gave {len(results)} results for {len(jobs)} decodes")
                ] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():
                    continue  # its caller went away: the result is dropped
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
        self._dispatch()

    def close(self) -> None:
        """Wait for running decodes; called after the server stopped taking calls."""
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _settle(future: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        future.set_result(done.result())
