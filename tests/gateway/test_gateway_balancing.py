"""Tiers 1-2: client-side load balancing in the gateway (gateway/balancing.py). Addresses
that name several replicas; calls spread with round_robin; no new call to a replica that
says NOT_SERVING; a replica added behind a DNS name gets traffic once connections are
recycled (max_connection_age); a replica that goes away costs no idempotent call. The
replicas are fake services on loopback addresses 127.0.0.x, in this process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import gateway.upstream
from gateway.balancing import AddressError, channel_target, first_host
from gateway.config import GatewaySettings
from gateway.service import GatewayService
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2_grpc
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
from dns_fake import FakeDns
from fakes import FakeServices, FakeTranslate, FakeTts
from procs import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", "milo.translate.v1.Translator", "milo.tts.v1.Tts")


# ---- tier 1: addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("127.0.0.1:50052", "127.0.0.1:50052"),
        ("translate:50052", "translate:50052"),
        ("dns:///translate-headless:50052", "dns:///translate-headless:50052"),
        ("127.0.0.1:1, 127.0.0.2:1", "ipv4:127.0.0.1:1,127.0.0.2:1"),
        ("[::1]:1,[::2]:1", "ipv6:[::1]:1,[::2]:1"),
        ("ipv4:10.0.0.1:1,10.0.0.2:1", "ipv4:10.0.0.1:1,10.0.0.2:1"),
    ],
)
def test_an_address_becomes_a_grpc_target(address: str, target: str):
    assert channel_target(address) == target


@pytest.mark.parametrize("address", ["", "stt-0:1,stt-1:1", "127.0.0.1:1,[::1]:1", "a,b"])
def test_an_address_grpc_could_not_use_is_refused_with_a_reason(address: str):
    with pytest.raises(AddressError):
        channel_target(address)
    if address:
        with pytest.raises(ValueError, match="address"):
            GatewaySettings(translate_address=address)


def test_status_page_finds_metrics_of_the_first_replica():
    assert first_host("dns:///tts-headless:50054") == "tts-headless"
    assert first_host("127.0.0.2:1,127.0.0.3:1") == "127.0.0.2"
    settings = GatewaySettings(tts_address="dns:///tts-headless:50054")
    assert settings.metrics_address("tts") == "tts-headless:9154"


# ---- tier 2: replicas on loopback ----------------------------------------------------------


class Replica:
    """Fake translate and TTS on one loopback address, with their own health."""

    def __init__(self, host: str, port: int = 0, max_age_ms: int | None = None) -> None:
        self.host, self.port, self.max_age_ms = host, port, max_age_ms
        self.translate, self.tts = FakeTranslate(), FakeTts()
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def calls(self) -> int:
        return len(self.translate.calls) + len(self.tts.texts)

    async def start(self) -> Replica:
        options = [("grpc.max_connection_age_ms", self.max_age_ms)] if self.max_age_ms else []
        self.server = grpc.aio.server(options=options)
        translate_pb2_grpc.add_TranslatorServicer_to_server(self.translate, self.server)
        tts_pb2_grpc.add_TtsServicer_to_server(self.tts, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        await self.set(SERVING)
        self.port = self.server.add_insecure_port(self.address)
        await self.server.start()
        return self

    async def set(self, status: int) -> None:
        for name in NAMES:
            await self.health.set(name, status)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)


async def start_gateway(
    fakes: FakeServices, translate: str, tts: str
) -> tuple[ServiceHost, grpc.aio.Channel]:
    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        stt_address=fakes.addresses["stt"],
        llm_address=fakes.addresses["llm"],
        translate_address=translate,
        tts_address=tts,
        unary_retries=3,
        http_enabled=False,
    )
    host = ServiceHost(GatewayService(settings), settings)
    await host.start()
    return host, grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")


@pytest.fixture
async def fakes():
    services = FakeServices()
    await services.start()
    yield services
    await services.stop()


@pytest.fixture
async def replicas():
    started = [await Replica(f"127.0.0.{i}").start() for i in (1, 2, 3)]
    yield started
    for replica in started:
        await replica.stop()


def translate_request(text: str = "Salama") -> gw.TranslateRequest:
    return gw.TranslateRequest(
        request=translate_pb2.TranslateRequest(
            texts=[text], source_language="mg", target_language="fr"
        )
    )


async def converse_turns(stub: gateway_pb2_grpc.ConversationStub, turns: int) -> None:
    """`turns` text turns on one session, each to the end (3 sentences: translate + TTS)."""
    queue: asyncio.Queue[gw.ConverseRequest | None] = asyncio.Queue()
    queue.put_nowait(gw.ConverseRequest(config=gw.SessionConfig()))

    async def requests():
        while (item := await queue.get()) is not None:
            yield item

    call = stub.Converse(requests(), timeout=30)
    done = 0
    queue.put_nowait(gw.ConverseRequest(text=gw.UserText(text="Salama")))
    async for event in call:
        if event.HasField("error"):
            raise AssertionError(event.error)
        if event.HasField("turn_ended"):
            assert event.turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
            done += 1
            queue.put_nowait(
                None if done == turns else gw.ConverseRequest(text=gw.UserText(text="Salama"))
            )


async def test_turns_spread_over_every_replica(fakes, replicas):
    translate = ",".join(r.address for r in replicas)
    tts = ",".join(r.address for r in replicas[:2])
    host, channel = await start_gateway(fakes, translate, tts)
    try:
        await converse_turns(gateway_pb2_grpc.ConversationStub(channel), turns=4)
        assert all(r.translate.calls for r in replicas), [len(r.translate.calls) for r in replicas]
        assert all(r.tts.texts for r in replicas[:2]), [len(r.tts.texts) for r in replicas]
        assert not replicas[2].tts.texts, "TTS only where the TTS address points"
    finally:
        await channel.close()
        await host.stop(grace=0)


async def test_no_new_call_goes_to_a_replica_that_is_not_serving(fakes, replicas):
    host, channel = await start_gateway(
        fakes, ",".join(r.address for r in replicas), replicas[0].address
    )
    stub = gateway_pb2_grpc.ConversationStub(channel)
    try:
        for _ in range(6):
            await stub.Translate(translate_request(), timeout=10)
        draining = replicas[1]
        await draining.set(NOT_SERVING)
        # The replica's health reaches the gateway's channel over its own stream: wait until
        # calls have stopped landing there, then none may.
        quiet = 0
        async with asyncio.timeout(10):
            while quiet < 6:
                before = len(draining.translate.calls)
                await stub.Translate(translate_request(), timeout=10)
                quiet = quiet + 1 if len(draining.translate.calls) == before else 0
        before = [len(r.translate.calls) for r in replicas]
        for _ in range(20):
            await stub.Translate(translate_request(), timeout=10)
        after = [len(r.translate.calls) for r in replicas]
        assert after[1] == before[1], "NOT_SERVING: no new call"
        assert after[0] > before[0] and after[2] > before[2]
        await draining.set(SERVING)  # back in the rotation
        await wait_until_called(stub, draining)
    finally:
        await channel.close()
        await host.stop(grace=0)


async def wait_until_called(
    stub: gateway_pb2_grpc.ConversationStub, replica: Replica, within: float = 15.0
) -> None:
    before = len(replica.translate.calls)
    async with asyncio.timeout(within):
        while len(replica.translate.calls) == before:
            await stub.Translate(translate_request(), timeout=10)


async def test_a_replica_added_behind_the_dns_name_gets_traffic_after_connection_age(
    fakes, monkeypatch
):
    # A headless Service on loopback: a DNS server answering with the replicas' addresses,
    # all on one port; servers recycle connections after 1 s so the gateway re-resolves.
    # The gateway's channel may re-resolve as often as every 0.5 s (30 s by default).
    options = gateway.upstream.channel_options
    monkeypatch.setattr(
        gateway.upstream,
        "channel_options",
        lambda name, retries: [
            *options(name, retries),
            ("grpc.dns_min_time_between_resolutions_ms", 500),
        ],
    )
    first = await Replica("127.0.0.1", max_age_ms=1000).start()
    second = await Replica("127.0.0.2", first.port, max_age_ms=1000).start()
    dns = await FakeDns("translate.milo.test").start()
    dns.addresses = [first.host, second.host]
    host, channel = await start_gateway(fakes, dns.authority(first.port), first.address)
    stub = gateway_pb2_grpc.ConversationStub(channel)
    third = Replica("127.0.0.3", first.port, max_age_ms=1000)
    try:
        await wait_until_called(stub, first)
        await wait_until_called(stub, second)
        await third.start()
        dns.addresses.append(third.host)  # the new pod is ready: DNS lists it
        await wait_until_called(stub, third, within=20)
    finally:
        await channel.close()
        await host.stop(grace=0)
        for replica in (first, second, third):
            await replica.stop()
        dns.close()


async def test_a_replica_that_goes_away_costs_no_idempotent_call(fakes, replicas):
    host, channel = await start_gateway(
        fakes, ",".join(r.address for r in replicas), replicas[0].address
    )
    stub = gateway_pb2_grpc.ConversationStub(channel)
    failures: list[grpc.aio.AioRpcError] = []

    async def client(n: int) -> None:
        for _ in range(n):
            try:
                await stub.Translate(translate_request(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)

    try:
        await wait_until_called(stub, replicas[2])
        load = [asyncio.create_task(client(25)) for _ in range(4)]
        await wait_until(lambda: len(replicas[2].translate.calls) >= 5)
        await replicas[2].stop()  # gone: its connections close
        await asyncio.gather(*load)
        assert not failures, [f.details() for f in failures]
        assert sum(len(r.translate.calls) for r in replicas) >= 100
    finally:
        await channel.close()
        await host.stop(grace=0)


def test_the_python_client_takes_several_gateway_addresses():
    from milo.client import _target

    assert _target("127.0.0.1:50050") == "127.0.0.1:50050"
    assert _target("dns:///milo-gateway:50050") == "dns:///milo-gateway:50050"
    assert _target(["127.0.0.1:1", "127.0.0.2:1"]) == "ipv4:127.0.0.1:1,127.0.0.2:1"
    assert _target("127.0.0.1:1,127.0.0.2:1") == "ipv4:127.0.0.1:1,127.0.0.2:1"
