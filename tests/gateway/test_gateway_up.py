"""Tier 4: `milo up`, the README's main job: the whole stack on the demo models, a turn
through it, and Ctrl-C stopping every process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gateway.up import free_base_port
from milo.client import MiloClient
from milo.gateway.v1 import gateway_pb2 as gw

pytestmark = pytest.mark.slow


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, within: float = 240) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        assert proc.poll() is None, f"milo up exited early:\n{text}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in time:\n{log.read_text(errors='replace')}")


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


async def one_turn(address: str) -> list[str]:
    async def inputs():
        yield "Hello"

    config = gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT)
    config.sampling.max_tokens = 24
    async with MiloClient(address) as client:
        return [event.kind async for event in client.converse(inputs(), config, timeout=120)]


def test_milo_up_serves_a_turn_and_ctrl_c_stops_everything(demo_models):
    base = free_base_port()
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    env = {**os.environ, "MILO_GATEWAY_HTTP_PORT": "0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--models",
                str(demo_models),
                "--base-port",
                str(base),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        text = wait_for(log, r"Milo is up", proc)
        assert "English-only" in text  # the demo STT sets the conversation language
        for port in range(base, base + 5):
            assert f":{port}" in text
        kids = children_of(proc.pid)
        assert len(kids) == 5
        kinds = asyncio.run(one_turn(f"127.0.0.1:{base}"))
        assert kinds[-1] == "turn_ended" and "reply_sentence" in kinds
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        for pid in kids:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            ), f"child {pid} left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            for pid in children_of(proc.pid):
                os.kill(pid, signal.SIGKILL)
