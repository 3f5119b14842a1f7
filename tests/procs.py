"""Start a service in its own process for tier-3/4 tests, and wait until it is SERVING.

    with ServiceProcess("services.stt", {"MILO_STT_MODEL_DIR": ...}, prefix="MILO_STT_") as svc:
        channel = grpc.insecure_channel(svc.address)

The process listens on a free port (port 0; the port is read from its log), its log goes
to a file (never a pipe that could fill up and block it), and the wait is on the health
service with a deadline, not on sleeps.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_LISTENING = re.compile(r"listening on [^\s]+:(\d+)")
_HTTP = re.compile(r"http bridge serving on http://[^\s]+:(\d+)")
_METRICS = re.compile(r"metrics on http://[^\s]+:(\d+)/metrics")


class ServiceProcess:
    def __init__(
        self,
        module: str,
        env: dict[str, str] | None = None,
        prefix: str = "MILO_",
        args: list[str] | None = None,
        startup_timeout: float = 120.0,
        python: str | None = None,
    ) -> None:
        self.module, self.prefix, self.args = module, prefix, args or []
        self.python = python or sys.executable  # another environment's interpreter
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `milo up`: services share cores
        self.env.setdefault(f"{prefix}HOST", "127.0.0.1")
        self.env.setdefault(f"{prefix}PORT", "0")
        self.env.setdefault(f"{prefix}METRICS_HOST", "127.0.0.1")
        self.env.setdefault(f"{prefix}METRICS_PORT", "0")
        self.env.setdefault(f"{prefix}HTTP_PORT", "0")  # the gateway's HTTP bridge
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = Path(tempfile.mkstemp(prefix=module.replace(".", "_"), suffix=".log")[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_port(self) -> int:
        """The gateway's HTTP port (logged before it says SERVING)."""
        return self._logged_port(_HTTP, "an HTTP port")

    @property
    def metrics_port(self) -> int:
        return self._logged_port(_METRICS, "a metrics port")

    def _logged_port(self, pattern: re.Pattern[str], what: str) -> int:
        match = pattern.search(self.log())
        if match is None:
            raise RuntimeError(f"{self.module} logged no {what}:\n{self.log()}")
        return int(match.group(1))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> ServiceProcess:
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [self.python, "-m", self.module, *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        try:
            self.port = self._wait_for_port(deadline)
            self.wait_serving(deadline)
        except BaseException:
            self.kill()  # never leave a half-started service behind
            raise
        return self

    def _wait_for_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log())
            if match:
                return int(match.group(1))
            self._check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"{self.module} did not start listening:\n{self.log()}")

    def wait_serving(self, deadline: float) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            for reply in stub.Watch(request, timeout=max(1.0, deadline - time.monotonic())):
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                self._check_alive()
        raise TimeoutError(f"{self.module} never became SERVING:\n{self.log()}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a condition that no event announces, with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
