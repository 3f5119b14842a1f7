"""The gateway as a runtime Service: no model; channels to the four services."""

from __future__ import annotations

import grpc

from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.servicer import ConversationServicer
from milo.gateway.v1 import gateway_pb2, gateway_pb2_grpc


class GatewayService:
    name = "gateway"
    service_names = (gateway_pb2.DESCRIPTOR.services_by_name["Conversation"].full_name,)
    model_id = "none"
    device = "none"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.backends: Backends | None = None
        self.servicer: ConversationServicer | None = None

    def register(self, server: grpc.aio.Server) -> None:
        """Called on the event loop: the channels and health watchers live there."""
        s = self.settings
        key = s.backend_api_key.get_secret_value() if s.backend_api_key else None
        addresses = {"stt": s.stt_address, "translate": s.translate_address,
                     "llm": s.llm_address, "tts": s.tts_address}
        self.backends = Backends(addresses, key, s.unary_retries)
        self.backends.start()
        self.servicer = ConversationServicer(s, self.backends)
        gateway_pb2_grpc.add_ConversationServicer_to_server(self.servicer, server)

    def load(self) -> None:
        """Nothing to load: the gateway serves as soon as it listens; each dependency's
        health is tracked apart (Describe, milo_gateway_dependency_up)."""

    def close(self) -> None:
        """Channels close with the process."""
