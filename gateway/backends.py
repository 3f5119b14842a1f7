"""Long-lived channels to the four services, their health, and calls with deadlines.

One grpc.aio channel per service for the gateway's lifetime, with keepalive and fast
reconnect (backoff at most 2 s). Before a call, `connected()` gives a channel that is not
READY a short grace to (re)connect, so a service that has just restarted is reached, while
one that is down still fails fast (UNAVAILABLE) instead of holding the caller to its
deadline. The idempotent unary calls (Recognize, Translate, Describe) have a retry policy:
UNAVAILABLE and RESOURCE_EXHAUSTED answers are retried with exponential backoff, honouring
the server's grpc-retry-pushback-ms. Streaming calls are never retried: a half-spoken reply
cannot be replayed.

Each address may name several replicas (a DNS name, `dns:///headless-service:port`, or a
list of IP addresses): calls are spread with round_robin and a replica that reports
NOT_SERVING gets no new call (gateway/balancing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import metrics
from gateway.balancing import balancing_config, channel_target
from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc

log = logging.getLogger(__name__)

NAMES = ("stt", "translate", "llm", "tts")
SERVICE_NAMES = {
    "stt": stt_pb2.DESCRIPTOR.services_by_name["Stt"].full_name,
    "translate": translate_pb2.DESCRIPTOR.services_by_name["Translator"].full_name,
    "llm": llm_pb2.DESCRIPTOR.services_by_name["Llm"].full_name,
    "tts": tts_pb2.DESCRIPTOR.services_by_name["Tts"].full_name,
}
_IDEMPOTENT = {"stt": ["Recognize", "Describe"], "translate": ["Translate", "Describe"],
               "llm": ["Describe"], "tts": ["Describe"]}


def _service_config(name: str, retries: int) -> str:
    methods = [{"service": SERVICE_NAMES[name], "method": m} for m in _IDEMPOTENT[name]]
    policy = {
        "maxAttempts": retries + 1,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    config = balancing_config()
    if retries:
        config["methodConfig"] = [{"name": methods, "retryPolicy": policy}]
    return json.dumps(config)


def channel_options(name: str, retries: int) -> list[tuple[str, object]]:
    return [
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", _service_config(name, retries)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


@dataclass
class Dependency:
    name: str
    address: str
    channel: grpc.aio.Channel
    status: str = "UNKNOWN"
    model_id: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Backends:
    """Stubs for the four services plus a watcher of each one's health."""

    def __init__(self, addresses: dict[str, str], api_key: str | None, retries: int) -> None:
        self.deps = {
            name: Dependency(name, addr, grpc.aio.insecure_channel(
                channel_target(addr), options=channel_options(name, retries)))
            for name, addr in addresses.items()
        }
        self.metadata: Sequence[tuple[str, str]] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.stt = stt_pb2_grpc.SttStub(self.deps["stt"].channel)
        self.translate = translate_pb2_grpc.TranslatorStub(self.deps["translate"].channel)
        self.llm = llm_pb2_grpc.LlmStub(self.deps["llm"].channel)
        self.tts = tts_pb2_grpc.TtsStub(self.deps["tts"].channel)
        self._watchers: list[asyncio.Task[None]] = []
        self._describes: set[asyncio.Task[None]] = set()
        self.on_status: list[Callable[[str, str], None]] = []  # called on each change

    async def connected(self, name: str, grace: float = 2.5) -> None:
        """Give a channel that is not READY `grace` seconds to (re)connect; never raises:
        a call on a channel still down then fails fast with UNAVAILABLE."""
        channel = self.deps[name].channel
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), grace)

    def start(self) -> None:
        self._watchers = [asyncio.create_task(self._watch(d)) for d in self.deps.values()]

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        for dep in self.deps.values():
            await dep.channel.close()

    def statuses(self) -> dict[str, str]:
        return {name: dep.status for name, dep in self.deps.items()}

    async def _watch(self, dep: Dependency) -> None:
        """Follow the dependency's health forever; UNREACHABLE while the watch cannot connect.
        The watch runs on one replica: when it says NOT_SERVING (draining, loading), the
        watch is opened again, and lands on a replica that serves if there is one."""
        stub = health_pb2_grpc.HealthStub(dep.channel)
        request = health_pb2.HealthCheckRequest(service="")
        while True:
            try:
                call = stub.Watch(request, wait_for_ready=True)
                try:
                    async for reply in call:
                        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                        self._set(dep, status)
                        if status != "SERVING":
                            break
                finally:
                    call.cancel()
            except grpc.aio.AioRpcError as exc:
                self._set(dep, "UNREACHABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE
                          else "UNKNOWN")
            await asyncio.sleep(0.5)

    def _set(self, dep: Dependency, status: str) -> None:
        if status == dep.status:
            return
        log.info("dependency %s at %s is %s", dep.name, dep.address, status)
        dep.status = status
        metrics.DEPENDENCY_UP.labels(dep.name).set(1 if status == "SERVING" else 0)
        dep.changed.set()
        dep.changed = asyncio.Event()
        for callback in self.on_status:
            callback(dep.name, status)
        if status == "SERVING" and not dep.model_id:
            task = asyncio.create_task(self._fetch_model_id(dep))
            self._describes.add(task)
            task.add_done_callback(self._describes.discard)

    async def _fetch_model_id(self, dep: Dependency) -> None:
        stub = {"stt": self.stt, "translate": self.translate, "llm": self.llm, "tts": self.tts}
        describe_request = {
            "stt": stt_pb2.DescribeRequest(), "translate": translate_pb2.DescribeRequest(),
            "llm": llm_pb2.DescribeRequest(), "tts": tts_pb2.DescribeRequest(),
        }[dep.name]
        try:
            reply = await stub[dep.name].Describe(  # type: ignore[attr-defined]
                describe_request, timeout=5, metadata=self.metadata)
            dep.model_id = reply.model_id
        except grpc.aio.AioRpcError as exc:
            log.warning("could not describe %s: %s", dep.name, exc.details())
