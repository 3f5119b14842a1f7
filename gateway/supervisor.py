"""When `milo up` restarts a child that exited unexpectedly, and when it gives up.

Pure policy, no processes: `RestartPolicy.on_exit(now)` says how long to wait before the
next start (exponential backoff), or None once the child has crashed `max_crashes` times
within `window_s` seconds (a crash loop: restarting again would only hide the cause).
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Backoff `initial_backoff_s * 2**(n-1)`, capped at `max_backoff_s`, where n counts the
    crashes within the last `window_s` seconds; give up at `max_crashes` of them."""

    max_crashes: int = 5
    window_s: float = 60.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    crashes: deque[float] = field(default_factory=deque)

    def on_exit(self, now: float) -> float | None:
        """Record a crash at `now` (monotonic seconds): seconds to wait, or None to give up."""
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.window_s:
            self.crashes.popleft()
        n = len(self.crashes)
        if n >= self.max_crashes:
            return None
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** (n - 1))


def exit_reason(returncode: int) -> str:
    """A person's words for a process's exit status (negative: killed by that signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"
