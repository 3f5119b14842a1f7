"""CPU used during a run: by this client (always) and by a local server process (--server-pid),
so that a report says whether the service or the load generator ran out of CPU."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process from /proc (Linux); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self._wall = self._client = 0.0
        self._server: float | None = None

    def start(self) -> None:
        self._wall, self._client = time.monotonic(), time.process_time()
        self._server = process_cpu_s(self.server_pid) if self.server_pid else None

    def stop(self) -> dict[str, Any]:
        wall = max(1e-9, time.monotonic() - self._wall)
        out: dict[str, Any] = {
            "cores": os.cpu_count() or 1,
            "client_percent": (time.process_time() - self._client) / wall * 100,
            "server_percent": None,
        }
        if self.server_pid and self._server is not None:
            now = process_cpu_s(self.server_pid)
            if now is not None:
                out["server_percent"] = (now - self._server) / wall * 100
        return out
