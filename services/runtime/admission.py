"""Admission control: bounded concurrency in front of a model, a bounded FIFO queue, then
RESOURCE_EXHAUSTED with a retry hint.

Callers are admitted strictly in arrival order (a deque of futures, not a semaphore whose
wake-up order is an implementation detail), so one busy client cannot starve another.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from services.runtime.errors import ResourceExhausted


class Admission:
    """At most `max_concurrency` holders; at most `max_queue` waiting; the rest refused."""

    def __init__(
        self,
        max_concurrency: int,
        max_queue: int,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError("max_concurrency >= 1 and max_queue >= 0 are required")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._on_change = on_change
        self._mean_hold_s = 0.5  # EWMA of slot hold time, seeds the retry hint

    @property
    def active(self) -> int:
        """Callers holding a slot now."""
        return self._active

    @property
    def queued(self) -> int:
        """Callers waiting in the queue now."""
        return len(self._waiters)

    def retry_after_ms(self) -> int:
        """A guess at when a slot frees up: mean hold time times the queue ahead, per slot."""
        ahead = (len(self._waiters) + 1) / self.max_concurrency
        return max(100, int(self._mean_hold_s * ahead * 1000))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one slot for the body; yields the seconds spent waiting in the queue."""
        start = time.monotonic()
        await self._acquire()
        waited = time.monotonic() - start
        held_from = time.monotonic()
        try:
            yield waited
        finally:
            held = time.monotonic() - held_from
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * held
            self._release()

    async def _acquire(self) -> None:
        if self._active < self.max_concurrency and not self._waiters:
            self._active += 1
            self._notify()
            return
        if len(self._waiters) >= self.max_queue:
            raise ResourceExhausted(
                f"server busy: {self._active} running and {len(self._waiters)} queued "
                f"(limit {self.max_queue}); retry later",
                retry_after_ms=self.retry_after_ms(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._notify()
        try:
            await waiter  # the releaser hands its slot over: _active is unchanged
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed to us as we were cancelled
            else:
                self._waiters.remove(waiter)
                self._notify()
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._notify()
                return
        self._active -= 1
        self._notify()

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change(self._active, len(self._waiters))
