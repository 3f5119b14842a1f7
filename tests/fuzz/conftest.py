"""The stack the fuzzer targets: the four services and the gateway as separate processes on
the demo models, started once for the module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from procs import ServiceProcess

SERVICES = ("stt", "translate", "llm", "tts")


@pytest.fixture(scope="module")
def fuzz_stack(demo_models: Path) -> Iterator[dict[str, ServiceProcess]]:
    procs: dict[str, ServiceProcess] = {}
    env = {"MILO_MODELS_DIR": str(demo_models), "MILO_STT_LANGUAGE": "en"}
    try:
        for name in SERVICES:
            procs[name] = ServiceProcess(
                f"services.{name}", env, prefix=f"MILO_{name.upper()}_"
            ).start()
        gateway_env = {
            **env,
            "MILO_GATEWAY_DEFAULT_USER_LANGUAGE": "en",
            **{f"MILO_GATEWAY_{n.upper()}_ADDRESS": procs[n].address for n in SERVICES},
        }
        procs["gateway"] = ServiceProcess("gateway", gateway_env, prefix="MILO_GATEWAY_").start()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
