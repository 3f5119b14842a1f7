"""The demo stack for tier-3 load tests and the load-test benchmark: each service in its own
process on the demo models (started on first use, on a free port), and the gateway over them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from procs import ServiceProcess

SERVICES = ("stt", "translate", "llm", "tts")


class DemoStack:
    def __init__(self, models: Path, env: dict[str, str] | None = None) -> None:
        self.models = models
        self.env = env or {}
        self.procs: dict[str, ServiceProcess] = {}

    def _env(self, name: str) -> dict[str, str]:
        prefix = f"MILO_{name.upper()}_"
        env = {"MILO_MODELS_DIR": str(self.models), "MILO_STT_LANGUAGE": "en",
               "MILO_GATEWAY_DEFAULT_USER_LANGUAGE": "en"}
        env.update({k: v for k, v in self.env.items() if k.startswith(prefix)})
        return env

    def service(self, name: str) -> ServiceProcess:
        """The service `name` (stt, translate, llm, tts or gateway), SERVING."""
        if name not in self.procs:
            if name == "gateway":
                env = self._env("gateway")
                for dep in SERVICES:
                    env[f"MILO_GATEWAY_{dep.upper()}_ADDRESS"] = self.service(dep).address
                self.procs[name] = ServiceProcess("gateway", env, prefix="MILO_GATEWAY_").start()
            else:
                self.procs[name] = ServiceProcess(
                    f"services.{name}", self._env(name), prefix=f"MILO_{name.upper()}_").start()
        return self.procs[name]

    def stop(self) -> None:
        for name in ("gateway", *SERVICES):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.stop()
