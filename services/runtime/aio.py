"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


async def wait_changed(event: asyncio.Event, seconds: float | None) -> None:
    """Wait until `event` is set or `seconds` pass (None or inf: no limit).

    asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancel that
    lands as the wait ends (CPython gh-86296), which would keep a stopped dispatcher alive.
    """
    limit = None if seconds is None or seconds == math.inf else seconds
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await event.wait()


class Dispatcher(Generic[T]):
    """The one task behind a batcher: it waits until `wait_s()` says go, takes a batch with
    `take()` and awaits `run(batch)`, one batch at a time, for ever.

    `wait_s()` returns 0 (or less) to go now, else the longest time to wait (None or inf:
    until `poke`) before asking again; it is asked again whenever `poke()` is called. The
    task starts at the first `start()` (on the event loop) and ends with `stop_threadsafe()`.
    """

    def __init__(
        self,
        name: str,
        wait_s: Callable[[], float | None],
        take: Callable[[], list[T]],
        run: Callable[[list[T]], Awaitable[None]],
    ) -> None:
        self._name, self._wait_s, self._take, self._run = name, wait_s, take, run
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task if it is not running (on the event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self._name)

    def poke(self) -> None:
        """Something changed (a job came or went): ask `wait_s` again."""
        self._changed.set()

    def stop_threadsafe(self) -> None:
        """Stop the task, from any thread (the runtime closes services in a worker thread,
        after draining: no caller is left waiting)."""
        task = self._task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def _loop(self) -> None:
        while True:
            self._changed.clear()  # before asking: a poke from here on is not lost
            wait = self._wait_s()
            if wait is not None and wait <= 0:
                if batch := self._take():
                    await self._run(batch)
                continue
            await wait_changed(self._changed, wait)
