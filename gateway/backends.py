"""The four services as the gateway sees them: where they are, their health, their model.

Each dependency's health is watched for the gateway's lifetime (on the channels of the
gateway's `Upstream`, which makes every call), so Describe, /readyz and
milo_gateway_dependency_up say which service is down; once one is SERVING its model id is
read with Describe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import metrics
from gateway.upstream import DESCRIBE_REQUESTS, SERVICE_NAMES, Upstream, UpstreamError

log = logging.getLogger(__name__)
__all__ = ["SERVICE_NAMES", "Backends", "Dependency"]


@dataclass
class Dependency:
    """One service as the gateway sees it: `status` is a grpc.health.v1 serving status name
    (SERVING, NOT_SERVING, ...), or UNREACHABLE / UNKNOWN when the watch fails; `model_id`
    is from its Describe, "" until read; `changed` is set (then replaced) on each change."""

    name: str
    address: str
    channel: grpc.aio.Channel
    status: str = "UNKNOWN"
    model_id: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Backends:
    """A watcher of each service's health, over the channels of `upstream`."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.deps = {
            name: Dependency(name, address, upstream.channels[name])
            for name, address in upstream.addresses.items()
        }
        self._watchers: list[asyncio.Task[None]] = []
        self._describes: set[asyncio.Task[None]] = set()
        self.on_status: list[Callable[[str, str], None]] = []  # called on each change

    def start(self) -> None:
        """Start one health watch per service (needs a running event loop)."""
        self._watchers = [asyncio.create_task(self._watch(d)) for d in self.deps.values()]

    async def close(self) -> None:
        """Stop the watches and close the upstream channels."""
        for task in self._watchers:
            task.cancel()
        await self.upstream.close()

    def statuses(self) -> dict[str, str]:
        """Each service's current status, by service name (stt, translate, llm, tts)."""
        return {name: dep.status for name, dep in self.deps.items()}

    async def _watch(self, dep: Dependency) -> None:
        """Follow the dependency's health forever; UNREACHABLE while the watch cannot connect."""
        stub = health_pb2_grpc.HealthStub(dep.channel)
        request = health_pb2.HealthCheckRequest(service="")
        while True:
            try:
                async for reply in stub.Watch(request, wait_for_ready=True):
                    self._set(dep, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            except grpc.aio.AioRpcError as exc:
                self._set(
                    dep, "UNREACHABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE else "UNKNOWN"
                )
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
        try:
            reply = await self.upstream.unary(dep.name, "Describe", DESCRIBE_REQUESTS[dep.name]())
            dep.model_id = reply.model_id
        except UpstreamError as exc:
            log.warning("could not describe %s: %s", dep.name, exc.message)
