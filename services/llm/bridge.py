"""Run a blocking generator on a worker thread and consume it from the event loop.

Items cross over through an asyncio queue. When the consumer stops early (the caller
cancelled, its deadline passed, the stream was closed), the cancel flag is set, and the
consumer waits for the worker to return before it lets go, so the model is free when the
next request takes its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = _End()


class _Channel(Generic[T]):
    """The worker's side: puts items on the loop's queue, thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[T | _End | _Failed] = asyncio.Queue()

    def put(self, item: T | _End | _Failed) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


async def iterate_in_thread(
    executor: Executor, produce: Callable[[threading.Event], Iterator[T]]
) -> AsyncGenerator[list[T], None]:
    """Yield what `produce(cancel)` yields, in order, in batches of what has piled up.

    A batch holds every item ready when the consumer asks (at least one), so a slow
    consumer gets fewer, larger batches and never falls behind item by item."""
    loop = asyncio.get_running_loop()
    channel: _Channel[T] = _Channel(loop)
    cancel = threading.Event()

    def work() -> None:
        try:
            for item in produce(cancel):
                channel.put(item)
        except BaseException as exc:  # handed to the consumer, which raises it
            channel.put(_Failed(exc))
        finally:
            channel.put(_END)

    done = loop.run_in_executor(executor, work)
    try:
        while True:
            batch, last = await _next_batch(channel.queue)
            if batch:
                yield batch
            if isinstance(last, _Failed):
                raise last.exc
            if last is not None:
                return
    finally:
        cancel.set()
        if not done.done():
            await asyncio.shield(done)


async def _next_batch(
    queue: asyncio.Queue[T | _End | _Failed],
) -> tuple[list[T], _End | _Failed | None]:
    """The items ready now (waiting for the first), and the end marker if one came."""
    batch: list[T] = []
    item = await queue.get()
    while True:
        if isinstance(item, _End | _Failed):
            return batch, item
        batch.append(item)
        if queue.empty():
            return batch, None
        item = queue.get_nowait()
