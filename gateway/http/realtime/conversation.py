"""One gateway session (GatewayCore.converse, the code gRPC Converse runs) driven from a
queue: the Realtime adapter puts ConverseRequests in, events come out to a callback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.core import GatewayCore
from milo.gateway.v1 import gateway_pb2 as gw
from services.runtime.errors import MiloError

log = logging.getLogger(__name__)
_END = None


class Conversation:
    """A gateway session started at once with `config`; each event is awaited through
    `on_event`, and an error that ends the session (MiloError) through `on_error`."""

    def __init__(
        self,
        core: GatewayCore,
        config: gw.SessionConfig,
        on_event: Callable[[gw.ConverseResponse], Awaitable[None]],
        on_error: Callable[[MiloError], Awaitable[None]],
    ) -> None:
        self._queue: asyncio.Queue[gw.ConverseRequest | None] = asyncio.Queue()
        self._config = config
        self._core, self._on_event, self._on_error = core, on_event, on_error
        self.task = asyncio.create_task(self._run(), name="realtime-conversation")

    @property
    def alive(self) -> bool:
        """True until the session has ended."""
        return not self.task.done()

    def send(self, request: gw.ConverseRequest) -> None:
        """Queue one request (audio, text, control) for the session; never blocks."""
        self._queue.put_nowait(request)

    async def _requests(self) -> AsyncIterator[gw.ConverseRequest]:
        yield gw.ConverseRequest(config=self._config)
        while (request := await self._queue.get()) is not _END:
            yield request

    async def _run(self) -> None:
        try:
            async for event in self._core.converse(self._requests()):
                await self._on_event(event)
        except MiloError as exc:
            log.info("realtime conversation ended: %s %s", exc.code.name, exc.message)
            await self._on_error(exc)

    async def close(self) -> None:
        """End the gateway session now (its turn in progress is cancelled)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
