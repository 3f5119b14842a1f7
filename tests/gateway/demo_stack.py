"""The whole stack on the demo models for tier-4 gateway tests: the four services and the
gateway, each in its own process on free ports, and a reader of their metrics."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from procs import ServiceProcess

SERVICES = ("stt", "translate", "llm", "tts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, models: Path) -> None:
        self.models = models
        self.procs: dict[str, ServiceProcess] = {}
        self.translate_port = free_port()  # fixed, so a restarted translate is found again

    def service(self, name: str) -> ServiceProcess:
        env = {"MILO_MODELS_DIR": str(self.models), "MILO_STT_LANGUAGE": "en"}
        if name == "translate":
            env["MILO_TRANSLATE_PORT"] = str(self.translate_port)
        return ServiceProcess(f"services.{name}", env, prefix=f"MILO_{name.upper()}_")

    def start(self) -> None:
        for name in SERVICES:
            self.procs[name] = self.service(name).start()
        env = {f"MILO_GATEWAY_{n.upper()}_ADDRESS": self.procs[n].address for n in SERVICES}
        env.update(
            MILO_GATEWAY_DEFAULT_USER_LANGUAGE="en",
            MILO_GATEWAY_MAX_SENTENCE_CHARS="40",
            MILO_GATEWAY_TRANSLATE_TIMEOUT_S="5",
        )
        self.procs["gateway"] = ServiceProcess("gateway", env, prefix="MILO_GATEWAY_").start()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

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
