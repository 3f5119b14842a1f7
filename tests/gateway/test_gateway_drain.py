"""Tier 2: the gateway's drain (GatewayCore.drain, run by the runtime on SIGTERM), on a real
server against fake services: open conversations get the `reconnect` event and finish their
turns; new ones are refused with UNAVAILABLE; a client that never half-closes is cut when
the grace is over, its turn ended as cancelled. SIGTERM itself: test_gateway_scaleout.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from gateway.config import GatewaySettings
from gateway.service import GatewayService
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeServices


@pytest.fixture
async def stack():
    fakes = FakeServices()
    await fakes.start()
    fakes.llm.gate = asyncio.Event()  # each reply holds after its first sentence
    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        stt_address=fakes.addresses["stt"],
        translate_address=fakes.addresses["translate"],
        llm_address=fakes.addresses["llm"],
        tts_address=fakes.addresses["tts"],
        http_enabled=False,
    )
    host = ServiceHost(GatewayService(settings), settings)
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    yield fakes, host, gateway_pb2_grpc.ConversationStub(channel)
    fakes.llm.gate.set()
    await channel.close()
    await host.stop(grace=0)
    await fakes.stop()


class Session:
    def __init__(self, stub: gateway_pb2_grpc.ConversationStub) -> None:
        self.queue: asyncio.Queue[gw.ConverseRequest | None] = asyncio.Queue()
        self.queue.put_nowait(
            gw.ConverseRequest(config=gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT))
        )
        self.call = stub.Converse(self._requests(), timeout=30)
        self.kinds: list[str] = []
        self.ended: list[int] = []

    async def _requests(self):
        while (item := await self.queue.get()) is not None:
            yield item

    async def until(self, kind: str) -> None:
        async for event in self.call:
            self.kinds.append(event.WhichOneof("event"))
            if event.HasField("turn_ended"):
                self.ended.append(event.turn_ended.reason)
            if self.kinds[-1] == kind:
                return
        raise AssertionError(f"stream ended before {kind}: {self.kinds}")

    async def rest(self) -> None:
        async for event in self.call:
            self.kinds.append(event.WhichOneof("event"))
            if event.HasField("turn_ended"):
                self.ended.append(event.turn_ended.reason)


async def test_drain_lets_the_turn_finish_and_ends_the_stream_after_the_half_close(stack):
    fakes, host, stub = stack
    session = Session(stub)
    session.queue.put_nowait(gw.ConverseRequest(text=gw.UserText(text="Salama")))
    await session.until("llm_delta")  # turn 1 is mid-way
    stopping = asyncio.create_task(host.stop(grace=20))
    await session.until("reconnect")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # no new conversation here
        async for _ in stub.Converse(iter([gw.ConverseRequest(config=gw.SessionConfig())])):
            pass
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    fakes.llm.gate.set()
    session.queue.put_nowait(None)  # the client half-closes, as MiloClient does
    await session.rest()
    assert session.ended == [gw.TurnEnded.REASON_COMPLETED]
    assert await session.call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)


async def test_a_client_that_stays_is_cut_when_the_grace_is_over(stack):
    _, host, stub = stack
    session = Session(stub)
    session.queue.put_nowait(gw.ConverseRequest(text=gw.UserText(text="Salama")))
    await session.until("llm_delta")
    stopping = asyncio.create_task(host.stop(grace=0.5))  # the LLM never resumes
    await session.rest()
    assert "reconnect" in session.kinds
    assert session.ended == [gw.TurnEnded.REASON_CANCELLED]
    assert await session.call.code() == grpc.StatusCode.OK, "ended by the gateway, in order"
    await asyncio.wait_for(stopping, 10)
