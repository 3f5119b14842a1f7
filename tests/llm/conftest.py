"""Fixtures of the LLM tests: an LLM service on a real gRPC server (port 0) around a fake
engine, and the path of the demo GGUF for the tiers that run the real model."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.llm.v1 import llm_pb2_grpc
from services.llm.config import LlmSettings
from services.llm.service import make_service
from services.runtime.model_service import ModelService
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
from llm_fakes import FakeEngine

SERVICE = "milo.llm.v1.Llm"


@dataclass
class Served:
    host: ServiceHost
    service: ModelService
    engine: Any
    stub: llm_pb2_grpc.LlmStub
    channel: grpc.aio.Channel

    async def serving(self) -> bool:
        health = health_pb2_grpc.HealthStub(self.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def llm_server() -> Callable[..., AbstractAsyncContextManager[Served]]:
    """`async with llm_server(engine, **settings) as s:` a served LLM service."""

    @asynccontextmanager
    async def serve(engine: Any = None, **settings: Any) -> AsyncIterator[Served]:
        engine = engine or FakeEngine()
        config = LlmSettings(
            host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0, **settings
        )
        service = make_service(config, engine=engine)
        host = ServiceHost(service, config)
        await host.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
                yield Served(host, service, engine, llm_pb2_grpc.LlmStub(channel), channel)
        finally:
            if isinstance(engine, FakeEngine):
                engine.ungate()  # nothing left waiting when the server stops
            await host.stop(grace=0)

    return serve


@pytest.fixture(scope="session")
def demo_gguf(demo_models: Path) -> Path:
    return demo_models / "llm" / "model.gguf"
