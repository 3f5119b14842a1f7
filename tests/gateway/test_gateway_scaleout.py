"""Tier 4: scale-out on loopback, as on Kubernetes but without a cluster. Replicas of the
real translate and TTS services (demo models, each its own process) behind one gateway:
turns spread over all of them, a replica drained with SIGTERM under load fails no call,
one killed outright costs at most the turn in flight. Gateways drained with SIGTERM mid-turn:
the turn completes, the Python client gets the `reconnect` event, goes on to another
gateway, and its next turn works. The LLM and STT are fakes in this process."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewaySettings
from gateway.service import GatewayService
from milo.client import MiloClient
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.translate.v1 import translate_pb2
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import FakeServices
from procs import ServiceProcess, wait_until

pytestmark = pytest.mark.slow


def requests_served(proc: ServiceProcess, method: str) -> float:
    """The replica's own count of OK calls of `method` (its milo_requests_total)."""
    url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "milo_requests_total"
                and sample.labels.get("method") == method
                and sample.labels.get("code") == "OK"
            ):
                return sample.value
    return 0.0


def replica(name: str, models: Path) -> ServiceProcess:
    env = {"MILO_MODELS_DIR": str(models), f"MILO_{name.upper()}_SHUTDOWN_GRACE_S": "20"}
    return ServiceProcess(f"services.{name}", env, prefix=f"MILO_{name.upper()}_")


@pytest.fixture(scope="module")
def replicas(demo_models):
    procs = {
        "translate": [replica("translate", demo_models) for _ in range(2)],
        "tts": [replica("tts", demo_models) for _ in range(2)],
    }
    started: list[ServiceProcess] = []
    try:
        for proc in [*procs["translate"], *procs["tts"]]:
            started.append(proc.start())
        yield procs
    finally:
        for proc in started:
            proc.kill()


@pytest.fixture
async def gateway(replicas):
    fakes = FakeServices()
    await fakes.start()
    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        stt_address=fakes.addresses["stt"],
        llm_address=fakes.addresses["llm"],
        translate_address=",".join(p.address for p in replicas["translate"]),
        tts_address=",".join(p.address for p in replicas["tts"]),
        unary_retries=3,
        http_enabled=False,
        translate_timeout_s=60,
        tts_timeout_s=60,
    )
    host = ServiceHost(GatewayService(settings), settings)
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    yield gateway_pb2_grpc.ConversationStub(channel)
    await channel.close()
    await host.stop(grace=0)
    await fakes.stop()


async def one_turn(stub: gateway_pb2_grpc.ConversationStub, text: str = "Salama") -> str:
    """A session with one text turn, audio out; returns how the turn ended (or the error)."""

    async def requests():
        yield gw.ConverseRequest(config=gw.SessionConfig(user_language="en", pivot_language="fr"))
        yield gw.ConverseRequest(text=gw.UserText(text=text))

    try:
        async for event in stub.Converse(requests(), timeout=60):
            if event.HasField("error"):
                return f"error at {gw.Stage.Name(event.error.stage)}: {event.error.code}"
            if event.HasField("turn_ended"):
                return gw.TurnEnded.Reason.Name(event.turn_ended.reason)
    except grpc.aio.AioRpcError as exc:
        return f"stream failed: {exc.code().name}"
    return "no turn_ended"


async def test_turns_spread_over_every_translate_and_tts_replica(replicas, gateway):
    before = {p.address: requests_served(p, "Translate") for p in replicas["translate"]}
    before |= {p.address: requests_served(p, "Synthesize") for p in replicas["tts"]}
    results = [await one_turn(gateway) for _ in range(2)]  # 4 translations, 3 TTS calls each
    assert results == ["REASON_COMPLETED"] * 2
    for proc in replicas["translate"]:
        assert requests_served(proc, "Translate") > before[proc.address], proc.address
    for proc in replicas["tts"]:
        assert requests_served(proc, "Synthesize") > before[proc.address], proc.address


async def test_sigterm_to_a_translate_replica_under_load_fails_no_call(replicas, gateway):
    draining = replicas["translate"][0]
    request = gw.TranslateRequest(
        request=translate_pb2.TranslateRequest(
            texts=["Hello there."], source_language="en", target_language="fr"
        )
    )
    failures: list[str] = []
    ok = 0
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal ok
        while not stop.is_set():
            try:
                await gateway.Translate(request, timeout=30)
                ok += 1
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")

    load = [asyncio.create_task(client()) for _ in range(4)]
    try:
        await wait_until(lambda: requests_served(draining, "Translate") >= 5, 60)
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)  # mid-load
        code = await asyncio.to_thread(draining.proc.wait, 40)
        after_exit = ok
        await wait_until(lambda: ok >= after_exit + 20, 60)  # the survivor takes every call
    finally:
        stop.set()
        await asyncio.gather(*load)
    assert code == 0, draining.log()
    assert not failures, failures[:5]


async def test_a_killed_tts_replica_costs_at_most_the_turn_in_flight(replicas, gateway):
    victim = replicas["tts"][0]
    served = requests_served(victim, "Synthesize")
    results: list[str] = []

    async def conversation() -> None:
        for _ in range(6):
            results.append(await one_turn(gateway))

    sessions = [asyncio.create_task(conversation()) for _ in range(2)]
    await wait_until(lambda: requests_served(victim, "Synthesize") > served, 60)
    victim.kill()  # SIGKILL: no drain
    await asyncio.gather(*sessions)
    failed = [r for r in results if r != "REASON_COMPLETED"]
    assert len(failed) <= len(sessions), results  # at most the turn each session had in flight
    assert results[-2:] == ["REASON_COMPLETED"] * 2, results  # and the next turns work


# ---- the gateway drains: the client reconnects -------------------------------------------


def sessions_active(proc: ServiceProcess) -> float:
    url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        for family in text_string_to_metric_families(reply.read().decode()):
            for sample in family.samples:
                if sample.name == "milo_gateway_sessions_active":
                    return sample.value
    return 0.0


async def test_sigterm_to_a_gateway_mid_turn_client_reconnects_and_goes_on():
    fakes = FakeServices()
    await fakes.start()
    fakes.llm.gate = asyncio.Event()  # turn 1 holds after its first sentence
    env = {f"MILO_GATEWAY_{n.upper()}_ADDRESS": a for n, a in fakes.addresses.items()}
    env |= {"MILO_GATEWAY_HTTP_ENABLED": "false", "MILO_GATEWAY_SHUTDOWN_GRACE_S": "20"}
    gateways = [ServiceProcess("gateway", env, prefix="MILO_GATEWAY_") for _ in range(2)]
    try:
        for proc in gateways:
            await asyncio.to_thread(proc.start)
        next_turn = asyncio.Event()

        async def inputs():
            yield "Salama"
            await next_turn.wait()
            yield "Indray"

        events, holder = [], None
        config = gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT)
        async with MiloClient([g.address for g in gateways]) as client:
            async with asyncio.timeout(60):
                async for event in client.converse(inputs(), config):
                    events.append(event)
                    if event.kind == "llm_delta" and holder is None:  # turn 1 is mid-way
                        holder = next(g for g in gateways if sessions_active(g) == 1)
                        holder.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    elif event.kind == "reconnect":
                        fakes.llm.gate.set()  # let turn 1 finish on the draining gateway
                    elif event.kind == "turn_ended":
                        next_turn.set()
        assert holder is not None and holder.proc is not None
        assert await asyncio.to_thread(holder.proc.wait, 30) == 0, holder.log()
    finally:
        for proc in gateways:
            proc.kill()
        await fakes.stop()
    kinds = [e.kind for e in events]
    assert kinds.count("session_started") == 2, kinds  # a second stream, on the other gateway
    ends = [e.payload.reason for e in events if e.kind == "turn_ended"]
    assert ends == [gw.TurnEnded.REASON_COMPLETED] * 2, kinds
    assert kinds.index("reconnect") < kinds.index("turn_ended"), "told while turn 1 ran"
    assert kinds.index("turn_ended") < kinds.index("session_started", 1), "turn 1 finished first"
    other = next(g for g in gateways if g is not holder)
    assert "session" in other.log() and "opened" in other.log()
