"""Tier 2: the containers' health check (services.runtime.healthcheck) against a real
ServiceHost on port 0: exit 0 only once the service says SERVING."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime import healthcheck
from services.runtime.config import ServiceSettings
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from toy_service import ToyService

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "milo.translate.v1.Translator"


def settings() -> ServiceSettings:
    return ServiceSettings(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def check(address: str, service: str = "") -> tuple[int, str]:
    return await asyncio.to_thread(healthcheck.check, address, service, 3.0)


async def test_unhealthy_while_loading_healthy_once_serving_unhealthy_when_draining():
    service = ToyService()
    host = ServiceHost(service, settings())
    await host.start(load=False)
    address = f"127.0.0.1:{host.port}"
    try:
        loading = asyncio.create_task(host.load())
        code, reason = await check(address)
        assert (code, reason) == (1, f"{address}: NOT_SERVING")
        assert (await check(address, SERVICE))[0] == 1
        service.load_gate.set()
        await loading
        assert await check(address) == (0, f"{address}: SERVING")
        assert (await check(address, SERVICE))[0] == 0
        await host.health.enter_graceful_shutdown()
        assert (await check(address))[0] == 1
    finally:
        service.load_gate.set()
        await host.stop(grace=0)


async def test_unknown_service_is_unhealthy_and_says_not_found():
    service = ToyService()
    service.load_gate.set()
    host = ServiceHost(service, settings())
    await host.start()
    try:
        code, reason = await check(f"127.0.0.1:{host.port}", "milo.nope.v1.Nope")
        assert code == 1
        assert "NOT_FOUND" in reason
    finally:
        await host.stop(grace=0)


async def test_nothing_listening_is_unhealthy_within_the_timeout():
    address = f"127.0.0.1:{free_port()}"
    code, reason = await check(address)
    assert code == 1
    assert reason.startswith(f"{address}: UNAVAILABLE")


async def test_module_entry_point_reads_the_address_from_the_environment():
    """What a HEALTHCHECK runs: the module, the address from MILO_HEALTHCHECK_ADDRESS."""
    service = ToyService()
    service.load_gate.set()
    host = ServiceHost(service, settings())
    await host.start()
    env = {**os.environ, healthcheck.ENV_ADDRESS: f"127.0.0.1:{host.port}"}
    try:
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.runtime.healthcheck"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        await host.stop(grace=0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("SERVING")


@pytest.mark.parametrize("argv", [["--address", "127.0.0.1:1", "--timeout", "0.5"]])
def test_main_exits_1_when_unreachable(argv: list[str], capsys: pytest.CaptureFixture[str]):
    assert healthcheck.main(argv) == 1
    assert "127.0.0.1:1" in capsys.readouterr().out
