"""Fixtures for the HTTP bridge tests.

`gateway_http` (tier 2): the gateway in this process on a real gRPC server (port 0) with
its HTTP bridge on a free port, over fake services on real servers (tests/gateway/fakes.py).
`stack` (tier 4, session-scoped): the session's demo stack (tests/conftest.py), the four
services on the demo models and the gateway, each in its own process on free ports, as
`milo up` runs them; the STT demo model is English.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.config import GatewaySettings
from gateway.service import GatewayService
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from http_fakes import HttpFakes
from procs import ServiceProcess
from stack import DemoStack


@dataclass
class Gateway:
    fakes: HttpFakes
    host: ServiceHost
    service: GatewayService
    client: httpx.AsyncClient

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"


def settings_for(fakes: HttpFakes, **overrides: object) -> GatewaySettings:
    a = fakes.addresses
    values: dict[str, object] = dict(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        http_port=0,
        stt_address=a["stt"],
        translate_address=a["translate"],
        llm_address=a["llm"],
        tts_address=a["tts"],
        translate_timeout_s=3,
        unary_retries=0,
        stt_metrics_address="127.0.0.1:9",
        translate_metrics_address="127.0.0.1:9",
        llm_metrics_address="127.0.0.1:9",
        tts_metrics_address="127.0.0.1:9",
    )
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


async def start_gateway(**overrides: object) -> Gateway:
    fakes = HttpFakes()
    await fakes.start()
    settings = settings_for(fakes, **overrides)
    service = GatewayService(settings)
    host = ServiceHost(service, settings)
    await host.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}", timeout=20)
    return Gateway(fakes, host, service, client)


async def stop_gateway(gateway: Gateway) -> None:
    await gateway.client.aclose()
    await gateway.host.stop(grace=0)
    await gateway.fakes.stop()


@pytest.fixture
async def gateway_http() -> AsyncIterator[Gateway]:
    gateway = await start_gateway()
    yield gateway
    await stop_gateway(gateway)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """English speech from espeak-ng (the demo STT model is tiny.en)."""
    path = tmp_path_factory.mktemp("speech") / "hello.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-s",
            "150",
            "-w",
            str(path),
            "Hello. What is the weather like in the capital today?",
        ],
        check=True,
    )
    return path


@dataclass
class Stack:
    demo: DemoStack

    @property
    def procs(self) -> dict[str, ServiceProcess]:
        return self.demo.procs

    @property
    def gateway(self) -> ServiceProcess:
        return self.demo.gateway

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"


@pytest.fixture(scope="session")
def stack(demo_stack: DemoStack) -> Stack:
    """The session's demo stack (tests/conftest.py), every service started."""
    return Stack(demo_stack.start())
