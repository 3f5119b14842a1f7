"""Checks of the machine around the models: free ports and running with no network."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping

from services.doctor.report import Finding, fail, ok, warn
from services.runtime.config import PORTS

HTTP_PORT = 8080
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def planned_ports(base_port: int = 0, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """What each service will listen on, as `milo up` plans it (`base_port` 0: defaults,
    overridden by MILO_<SERVICE>_PORT / _METRICS_PORT and MILO_GATEWAY_HTTP_PORT)."""
    env = os.environ if env is None else env
    ports: dict[str, int] = {}
    for offset, (name, (grpc_port, metrics_port)) in enumerate(PORTS.items()):
        if base_port:
            grpc_port, metrics_port = base_port + offset, base_port + offset + 100
        prefix = f"MILO_{name.upper()}_"
        ports[f"{name} gRPC"] = int(env.get(f"{prefix}PORT", grpc_port))
        ports[f"{name} metrics"] = int(env.get(f"{prefix}METRICS_PORT", metrics_port))
    ports["gateway HTTP"] = int(env.get("MILO_GATEWAY_HTTP_PORT", HTTP_PORT))
    return ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when another program already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def check_ports(ports: Mapping[str, int]) -> list[Finding]:
    """One `ports` finding: fail naming each port another program listens on (`ports` maps what
    the port is for to its number; 0 is skipped), else ok."""
    busy = [f"{port} ({what})" for what, port in ports.items() if port and port_in_use(port)]
    if busy:
        return [
            fail(
                "ports",
                f"in use by another program: {', '.join(busy)}",
                "stop the program holding them (`ss -ltnp`), or `milo up --base-port N`",
            )
        ]
    return [ok("ports", f"all {len(ports)} ports are free")]


def check_offline(env: Mapping[str, str] | None = None) -> list[Finding]:
    """Milo's services load local files only; the hub libraries should be told so too, so a
    missing file fails at once instead of waiting on a network that is not there."""
    env = os.environ if env is None else env
    if any(env.get(name, "").lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES):
        return [ok("network", "hub offline mode is on: nothing will try the network")]
    return [
        warn(
            "network",
            "hub offline mode is off: the services read local files only, "
            "but a library may still try the network on a missing file",
            "export HF_HUB_OFFLINE=1 (the containers set it)",
        )
    ]
