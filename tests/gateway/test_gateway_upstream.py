"""The gateway's upstream layer on its own: a cancellation that lands as a read completes is
never lost (on Python 3.11, asyncio.wait_for loses it: CPython gh-86296), and cancels the
call so that the read in flight ends with it (grpc/grpc#43360); an idempotent call
that a stopping replica refuses is retried."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gateway.upstream import Replies, UpstreamError, open_channel
from milo.translate.v1 import translate_pb2, translate_pb2_grpc


class FakeCall:
    """A call whose next read completes when the test says so."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.cancelled = False
        self.reads_ended = 0

    async def read(self) -> Any:
        try:
            return await self.reply
        finally:
            self.reads_ended += 1

    def cancel(self) -> None:  # as grpc.aio: a read in flight ends with the call
        self.cancelled = True
        if not self.reply.done():
            self.reply.set_exception(asyncio.CancelledError())


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


async def test_a_cancelled_reader_cancels_the_call_and_its_read_ends_with_it():
    """grpc.aio keeps a read's native resources (and the network buffer its message holds)
    for good when the task awaiting it is cancelled (grpc/grpc#43360): the read is never
    abandoned, the call is cancelled and the read ends with it."""
    call = FakeCall()
    reader = asyncio.create_task(anext(Replies("tts", call, first_read_s=None)))
    await asyncio.sleep(0)
    reader.cancel()  # a barge-in
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.sleep(0)
    assert call.cancelled and call.reads_ended == 1


async def test_no_first_reply_within_the_wait_is_deadline_exceeded_naming_the_service():
    replies = Replies("llm", FakeCall(), first_read_s=0.01)
    with pytest.raises(UpstreamError) as err:
        await anext(replies)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.value.service == "llm" and err.value.message.startswith("llm: no reply within")


class FlakyTranslate(translate_pb2_grpc.TranslatorServicer):
    """Fails the first call with `code`, as a replica does that is shutting down (calls it
    had not yet handed to a handler get CANCELLED: grpc/grpc#41785), then answers."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code, self.calls = code, 0

    async def Translate(self, request, context):
        self.calls += 1
        if self.calls == 1:
            await context.abort(self.code, "shutting down")
        return translate_pb2.TranslateResponse(
            translations=[translate_pb2.Translation(text=t) for t in request.texts]
        )


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE], ids=lambda c: c.name
)
async def test_an_idempotent_call_refused_by_a_stopping_replica_is_retried(code):
    servicer = FlakyTranslate(code)
    server = grpc.aio.server()
    translate_pb2_grpc.add_TranslatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with open_channel("translate", f"127.0.0.1:{port}", retries=2) as channel:
            stub = translate_pb2_grpc.TranslatorStub(channel)
            reply = await stub.Translate(translate_pb2.TranslateRequest(texts=["a"]), timeout=10)
        assert [t.text for t in reply.translations] == ["a"] and servicer.calls == 2
    finally:
        await server.stop(grace=0)
