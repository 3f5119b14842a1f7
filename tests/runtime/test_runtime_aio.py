"""Tier 1: services/runtime/aio.Dispatcher, the task behind the translate and TTS batchers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.runtime.aio import Dispatcher

pytestmark = pytest.mark.timeout(10)


class Queue:
    """Jobs go when `ready` is set; each batch run waits on `release` (if given)."""

    def __init__(self) -> None:
        self.jobs: list[int] = []
        self.batches: list[list[int]] = []
        self.ready = True
        self.release: asyncio.Event | None = None
        self.ran = asyncio.Event()
        self.started = asyncio.Event()
        self.dispatcher = Dispatcher("test", self.wait_s, self.take, self.run)

    def add(self, *jobs: int) -> None:
        self.jobs.extend(jobs)
        self.dispatcher.start()
        self.dispatcher.poke()

    def wait_s(self) -> float | None:
        return 0.0 if self.jobs and self.ready else None

    def take(self) -> list[int]:
        batch, self.jobs = self.jobs, []
        return batch

    async def run(self, batch: list[int]) -> None:
        self.batches.append(batch)
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        self.ran.set()

    async def next_batch(self) -> list[int]:
        await self.ran.wait()
        self.ran.clear()
        return self.batches[-1]


async def test_jobs_that_come_during_a_batch_go_together_in_the_next():
    q = Queue()
    q.release = asyncio.Event()
    q.add(1)
    await q.started.wait()
    q.add(2)
    q.add(3)  # while batch [1] runs
    q.release.set()
    while len(q.batches) < 2:
        await q.next_batch()
    assert q.batches == [[1], [2, 3]]


async def test_a_poke_wakes_a_dispatcher_waiting_without_limit():
    q = Queue()
    q.ready = False
    q.add(1)  # waits: wait_s says None
    await asyncio.sleep(0)
    assert not q.batches
    q.ready = True
    q.dispatcher.poke()
    assert await q.next_batch() == [1]


async def test_stop_threadsafe_from_another_thread_ends_the_task():
    q = Queue()
    q.add(1)
    await q.next_batch()
    task = q.dispatcher._task
    assert task is not None and not task.done()
    stopper = threading.Thread(target=q.dispatcher.stop_threadsafe)
    stopper.start()
    stopper.join()
    with pytest.raises(asyncio.CancelledError):
        await task
