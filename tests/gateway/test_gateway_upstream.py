"""Tier 1: the gateway's upstream layer on its own: a cancellation that lands as a read
completes is never lost (on Python 3.11, asyncio.wait_for loses it: CPython gh-86296)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gateway.upstream import Replies, UpstreamError


class FakeCall:
    """A call whose next read completes when the test says so."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def read(self) -> Any:
        return await self.reply


@pytest.mark.parametrize("turns", range(6))
async def test_a_cancel_as_the_read_completes_is_never_lost(turns):
    call = FakeCall()
    reader = asyncio.create_task(anext(Replies("llm", call, first_read_s=30)))
    await asyncio.sleep(0)  # the reader waits on the read
    call.reply.set_result("a delta")
    for _ in range(turns):  # the cancel lands 0 to 5 loop turns after the read completed
        await asyncio.sleep(0)
    if reader.done():
        return  # the read was delivered before the cancel: nothing to lose
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_no_first_reply_within_the_wait_is_deadline_exceeded_naming_the_service():
    replies = Replies("llm", FakeCall(), first_read_s=0.01)
    with pytest.raises(UpstreamError) as err:
        await anext(replies)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.value.service == "llm" and err.value.message.startswith("llm: no reply within")
