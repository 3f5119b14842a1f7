"""Host one Milo service on a grpc.aio server, with everything every service needs.

Life cycle: bind and start (health NOT_SERVING, service RPCs answer UNAVAILABLE) -> load
and warm up the model in a worker thread -> SERVING -> on SIGTERM/SIGINT: NOT_SERVING,
drain in-flight calls within the grace period, stop, release the model.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime import metrics
from services.runtime.admission import Admission
from services.runtime.config import ServiceSettings
from services.runtime.interceptors import ServiceInterceptor
from services.runtime.logs import setup_logging

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_DRAIN_MARGIN_S = 2.0  # after a service's own drain, before the server cancels what is left


class Service(Protocol):
    """What a service gives the runtime. `load` and `close` block; they run in a thread."""

    @property
    def name(self) -> str:
        """Short name, the metrics label: "stt"."""

    @property
    def service_names(self) -> Sequence[str]:
        """Full proto service names: ("milo.stt.v1.Stt",)."""

    @property
    def model_id(self) -> str:
        """The loaded model's id; valid once `load` has returned."""

    @property
    def device(self) -> str:
        """Where the model runs ("cpu", "cuda", ...); valid once loaded."""

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's servicers to `server`."""

    def load(self) -> None:
        """Load and warm up the model (blocks; runs in a thread)."""

    def close(self) -> None:
        """Release the model (blocks; runs in a thread)."""


class MethodSymbolPool:
    """The default descriptor pool, but a method's full name (`pkg.Service.Method`) is found
    too: grpc's Python reflection answers NOT_FOUND for it (grpc/grpc#34743), and ghz asks
    for exactly that (bojand/ghz#419), so `ghz --call milo.tts.v1.Tts.Synthesize` failed."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, name: str) -> Any:
        """The file defining `name`, a symbol or a method's full name (`pkg.Service.Method`);
        raises KeyError if neither is known."""
        try:
            return self._pool.FindFileContainingSymbol(name)
        except KeyError:
            service, _, method = name.rpartition(".")
            found = self._pool.FindServiceByName(service) if service else None
            if found is None or method not in found.methods_by_name:
                raise
            return found.file


class ServiceHost:
    """One service on one server. `await start()`, then `await stop()` (or `serve()`)."""

    def __init__(self, service: Service, settings: ServiceSettings) -> None:
        self.service, self.settings = service, settings
        self.health = health.aio.HealthServicer()
        attach = getattr(service, "attach_health", None)
        if attach is not None:  # optional: a service that reports more names (the gateway)
            attach(self.health)
        self.admission = Admission(
            settings.max_concurrency,
            settings.max_queue,
            on_change=self._on_admission_change,
        )
        attach_admission = getattr(service, "attach_admission", None)
        if attach_admission is not None:  # optional: a service with other fronts shares it
            attach_admission(self.admission)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.interceptor = ServiceInterceptor(service.name, self.admission, key)
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0
        self._metrics: metrics.MetricsServer | None = None
        self._loaded = asyncio.Event()

    def _on_admission_change(self, active: int, queued: int) -> None:
        metrics.ACTIVE.labels(self.service.name).set(active)
        metrics.QUEUE_DEPTH.labels(self.service.name).set(queued)

    async def start(self, load: bool = True) -> None:
        """Build and start the gRPC server (reflection and health NOT_SERVING) and /metrics, then
        load the model unless `load` is False (a test calls `load()` itself)."""
        s = self.settings
        self.server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                *s.connection_options(),
            ],
        )
        self.service.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [*self.service.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server, pool=MethodSymbolPool())
        await self._set_health(NOT_SERVING)
        self.port = self.server.add_insecure_port(s.address)
        await self.server.start()
        metrics.watch_gpu(self.service.name)
        self._metrics = metrics.MetricsServer(s.metrics_host, s.metrics_port)
        self.metrics_port = self._metrics.port
        log.info(
            "%s listening on %s:%d (NOT_SERVING until loaded)", self.service.name, s.host, self.port
        )
        if load:
            await self.load()

    async def load(self) -> None:
        """Load and warm up the model off the event loop, then say SERVING."""
        name, start = self.service.name, time.monotonic()
        await _in_daemon_thread(self.service.load, f"{name}-load")
        took = time.monotonic() - start
        metrics.MODEL_LOAD.labels(name).set(took)
        metrics.MODEL_INFO.labels(name, self.service.model_id, self.service.device).set(1)
        self.interceptor.ready = True
        await self._set_health(SERVING)
        log.info(
            "%s SERVING: model %s on %s, loaded and warmed up in %.2fs",
            name,
            self.service.model_id,
            self.service.device,
            took,
        )

    async def _set_health(self, status: int) -> None:
        for svc in ("", *self.service.service_names):
            await self.health.set(svc, status)  # type: ignore[arg-type]
        metrics.SERVING.labels(self.service.name).set(1 if status == SERVING else 0)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls for up to `grace` seconds, release the model."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        log.info("%s draining (grace %.1fs)", self.service.name, grace)
        await self.health.enter_graceful_shutdown()
        metrics.SERVING.labels(self.service.name).set(0)
        # Optional hook (the gateway): long-lived streams are asked to wind down while the
        # server refuses new calls; the server's own cut comes a little after the grace.
        drain = getattr(self.service, "drain", None)
        if self.server is not None:
            stopping = asyncio.ensure_future(
                self.server.stop(grace + (_DRAIN_MARGIN_S if drain is not None else 0))
            )
            if drain is not None:
                await drain(grace)
            await stopping
        aclose = getattr(self.service, "aclose", None)
        if aclose is not None:  # optional: what the service keeps on the event loop
            await aclose()
        await asyncio.to_thread(self.service.close)
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)  # shutdown() waits out a 0.5 s poll
        log.info("%s stopped", self.service.name)

    async def serve(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start(load=False)
        loader = asyncio.create_task(self.load())
        await asyncio.wait(
            {loader, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if loader.done() and loader.exception() is not None:
            await self.stop(grace=0)
            raise loader.exception()  # type: ignore[misc]
        await stop.wait()
        loader.cancel()
        await self.stop()


async def _in_daemon_thread(fn: Callable[[], None], name: str) -> None:
    """Run a blocking call in a daemon thread: unlike asyncio.to_thread, a SIGTERM while a
    model loads does not have to wait for the load to finish before the process exits."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, exc)
        else:
            loop.call_soon_threadsafe(settle, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    await done


S = TypeVar("S", bound=ServiceSettings)


def run(
    make_service: Callable[[S], Service],
    settings_cls: type[S],
    argv: Sequence[str] | None,
    prog: str,
) -> int:
    """Entry point shared by every service's __main__: settings from env + CLI, then serve."""
    settings = settings_cls(_cli_parse_args=list(argv or []), _cli_prog_name=prog)  # type: ignore[call-arg]
    setup_logging(settings.log_level)
    service = make_service(settings)
    asyncio.run(ServiceHost(service, settings).serve())
    return 0


def entry_point(
    make_service: Callable[[S], Service], settings_cls: type[S], prog: str
) -> Callable[..., int]:
    """A service's `main(argv=None, prog=...)`: `milo serve <name>` and `python -m` call it."""

    def main(argv: Sequence[str] | None = None, prog: str = prog) -> int:
        return run(make_service, settings_cls, sys.argv[1:] if argv is None else argv, prog)

    return main
