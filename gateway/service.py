"""The gateway as a runtime Service: no model; channels to the four services, the gRPC
servicer and the HTTP bridge, both over one GatewayCore."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2

from gateway.backends import SERVICE_NAMES, Backends
from gateway.config import GatewaySettings
from gateway.core import GatewayCore
from gateway.servicer import ConversationServicer
from gateway.upstream import Upstream
from milo.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.runtime.admission import Admission

if TYPE_CHECKING:
    from gateway.http.server import HttpServer

log = logging.getLogger(__name__)


class GatewayService:
    """The gateway for the runtime's ServiceHost (services.runtime.server): it registers the
    Conversation servicer, watches the four services and runs the HTTP bridge."""

    name = "gateway"
    service_names = (gateway_pb2.DESCRIPTOR.services_by_name["Conversation"].full_name,)
    model_id = "none"
    device = "none"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.backends: Backends | None = None
        self.core: GatewayCore | None = None
        self.servicer: ConversationServicer | None = None
        self.http: HttpServer | None = None
        self.http_port = 0
        self._health: health.aio.HealthServicer | None = None
        self._admission: Admission | None = None
        self._health_updates: set[asyncio.Task[None]] = set()

    def attach_health(self, servicer: health.aio.HealthServicer) -> None:
        """The gateway's health reflects its dependencies: each one's full service name
        (e.g. milo.translate.v1.Translator) is SERVING on the gateway's health service only
        while that dependency is. The gateway's own status ("") stays SERVING: a turn that
        needs a service that is down ends with an in-band error, and the session goes on."""
        self._health = servicer

    def attach_admission(self, admission: Admission) -> None:
        """One admission pool for the whole gateway: the gRPC calls (the runtime's
        interceptor) and the HTTP bridge's requests and WebSockets all take their slots
        from the host's pool, so at most `max_concurrency` run at once in all."""
        self._admission = admission

    def _publish(self, name: str, status: str) -> None:
        if self._health is None:
            return
        code = (
            health_pb2.HealthCheckResponse.SERVING
            if status == "SERVING"
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        task = asyncio.ensure_future(self._health.set(SERVICE_NAMES[name], code))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    def register(self, server: grpc.aio.Server) -> None:
        """Called on the event loop: the channels, health watchers and HTTP live there."""
        s = self.settings
        self.backends = Backends(Upstream.from_settings(s))
        self.backends.on_status.append(self._publish)
        for name in self.backends.deps:  # known names from the start, NOT_SERVING until seen up
            self._publish(name, "UNKNOWN")
        self.backends.start()
        self.core = GatewayCore(s, self.backends)
        self.servicer = ConversationServicer(self.core)
        gateway_pb2_grpc.add_ConversationServicer_to_server(self.servicer, server)
        if s.http_enabled:
            self._start_http(self.core)

    def _start_http(self, core: GatewayCore) -> None:
        try:
            from gateway.http.app import create_app
            from gateway.http.server import HttpServer
        except ImportError as exc:
            raise RuntimeError(
                f"the HTTP bridge needs {exc.name}: pip install 'milo[gateway]' "
                "(or run with --http-enabled false)"
            ) from exc
        host, port = self.settings.http_address
        app = create_app(self.settings, core, admission=self._admission)
        self.http = HttpServer(app, host, port, self.settings.shutdown_grace_s)
        self.http.start()

    async def drain(self, grace: float) -> None:
        """SIGTERM (called by the runtime as the server stops taking calls): open
        conversations get the `reconnect` event and `grace` seconds to finish their turns."""
        if self.core is not None:
            await self.core.drain(grace)

    def load(self) -> None:
        """No model: the gateway serves once HTTP listens too; each dependency's health is
        tracked apart (Describe, /readyz, milo_gateway_dependency_up)."""
        if self.http is not None:
            self.http_port = self.http.wait_started()

    def close(self) -> None:
        """Called from a worker thread after the gRPC server drained: stop HTTP (it closes
        open WebSockets); the channels close with the process."""
        if self.http is not None:
            self.http.stop_from_thread(self.settings.shutdown_grace_s + 5)
