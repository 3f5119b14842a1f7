"""CPU used during a run: by this client (always) and by local server processes (--server-pid,
repeatable), so that a report says whether the service or the load generator ran short."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process from /proc (Linux); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def processes_cpu_s(pids: Sequence[int]) -> float | None:
    """CPU seconds of all these processes; None if any is unknown."""
    values = [process_cpu_s(pid) for pid in pids]
    return None if not values or None in values else sum(v for v in values if v is not None)


class CpuMeter:
    """CPU use over one run, in percent of one core: of this client, and of the server processes
    `server_pids` (Linux /proc only)."""

    def __init__(self, server_pids: Sequence[int] = ()) -> None:
        self.server_pids = tuple(server_pids)
        self._wall = self._client = 0.0
        self._server: float | None = None

    def start(self) -> None:
        """Take the starting readings."""
        self._wall, self._client = time.monotonic(), time.process_time()
        self._server = processes_cpu_s(self.server_pids)

    def stop(self) -> dict[str, Any]:
        """{"cores", "client_percent", "server_percent"} since `start`; server_percent is None
        when the servers' CPU time cannot be read."""
        wall = max(1e-9, time.monotonic() - self._wall)
        out: dict[str, Any] = {
            "cores": os.cpu_count() or 1,
            "client_percent": (time.process_time() - self._client) / wall * 100,
            "server_percent": None,
        }
        if self._server is not None:
            now = processes_cpu_s(self.server_pids)
            if now is not None:
                out["server_percent"] = (now - self._server) / wall * 100
        return out
