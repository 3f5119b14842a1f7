"""The demo stack for tier-4 tests and benchmarks: each service in its own process on the
demo models (started on first use, on a free port), and the gateway over them.

One stack serves the whole test session (`demo_stack` in tests/conftest.py): the tests that
only talk to it share it; a test that stops, restarts or reconfigures a service starts its
own process for that service (and a gateway over it) and reuses the others.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import ServiceProcess

SERVICES = ("stt", "translate", "llm", "tts")

# The demo STT model is English only; short sentences make several per reply.
DEMO_ENV = {
    "MILO_STT_LANGUAGE": "en",
    "MILO_GATEWAY_DEFAULT_USER_LANGUAGE": "en",
    "MILO_GATEWAY_MAX_SENTENCE_CHARS": "40",
    "MILO_GATEWAY_HTTP_PORT": "0",
}


class DemoStack:
    def __init__(self, models: Path, env: dict[str, str] | None = None) -> None:
        self.models = models
        self.env = {**DEMO_ENV, **(env or {})}
        self.procs: dict[str, ServiceProcess] = {}

    def _env(self, name: str) -> dict[str, str]:
        prefix = f"MILO_{name.upper()}_"
        env = {"MILO_MODELS_DIR": str(self.models)}
        env.update({k: v for k, v in self.env.items() if k.startswith(prefix)})
        return env

    def service(self, name: str) -> ServiceProcess:
        """The service `name` (stt, translate, llm, tts or gateway), SERVING."""
        if name not in self.procs:
            if name == "gateway":
                self.procs[name] = self.gateway_over(self.service(d) for d in SERVICES)
            else:
                self.procs[name] = ServiceProcess(
                    f"services.{name}", self._env(name), prefix=f"MILO_{name.upper()}_"
                ).start()
        return self.procs[name]

    def gateway_over(self, services: Iterable[ServiceProcess], **env: str) -> ServiceProcess:
        """A new gateway (SERVING) over the given service processes, in SERVICES order, with
        `env` over the stack's gateway settings; the caller stops it."""
        gw = self._env("gateway")
        for dep, proc in zip(SERVICES, services, strict=True):
            gw[f"MILO_GATEWAY_{dep.upper()}_ADDRESS"] = proc.address
            gw[f"MILO_GATEWAY_{dep.upper()}_METRICS_ADDRESS"] = f"127.0.0.1:{proc.metrics_port}"
        return ServiceProcess("gateway", {**gw, **env}, prefix="MILO_GATEWAY_").start()

    @property
    def gateway(self) -> ServiceProcess:
        return self.service("gateway")

    def start(self) -> DemoStack:
        """Every service and the gateway (otherwise each starts when first asked for)."""
        self.service("gateway")
        return self

    def metric(self, process: str, name: str, **labels: str) -> float:
        """A metric of one process, summed over the series that carry `labels`."""
        port = self.procs[process].metrics_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        total = 0.0
        for line in text.splitlines():
            if not (line.startswith(name + " ") or line.startswith(name + "{")):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        for name in ("gateway", *SERVICES):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.stop()
