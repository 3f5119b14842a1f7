"""`milo up`'s supervision: the restart policy (tier 1) and one child that keeps crashing,
restarted with backoff, reported with its last lines, then given up on (real processes)."""

from __future__ import annotations

import signal
import threading

import pytest

from gateway import up
from gateway.supervisor import RestartPolicy, exit_reason


def test_backoff_doubles_then_gives_up_within_the_window():
    policy = RestartPolicy(max_crashes=4, window_s=60, initial_backoff_s=0.5, max_backoff_s=1.5)
    assert [policy.on_exit(t) for t in (0, 1, 2)] == [0.5, 1.0, 1.5]
    assert policy.on_exit(3) is None


def test_crashes_outside_the_window_are_forgotten():
    policy = RestartPolicy(max_crashes=2, window_s=10, initial_backoff_s=1)
    assert policy.on_exit(0) == 1
    assert policy.on_exit(20) == 1  # the first crash is 20 s old: a fresh start
    assert policy.on_exit(25) is None


def test_exit_reason_names_the_signal():
    assert exit_reason(-signal.SIGKILL) == "was killed by SIGKILL"
    assert exit_reason(3) == "exited with status 3"


@pytest.mark.tier3  # starts processes
@pytest.mark.parametrize("name", ["tts", "gateway"])
def test_a_crashing_child_is_restarted_then_given_up_on(monkeypatch, name):
    monkeypatch.setitem(up.MODULES, name, "tests.gateway.crash_child")
    child = up.Child(name, 0, 0, {})
    child.policy = RestartPolicy(max_crashes=3, initial_backoff_s=0.25)
    said: list[str] = []
    stopping = threading.Event()
    child.start()
    keep_going, now = True, 0.0
    while not child.gave_up:
        child.proc.wait(timeout=30)  # type: ignore[union-attr]
        keep_going = up.supervise(child, now, stopping, said.append)
        if child.restart_at is not None:
            now = child.restart_at
            assert up.supervise(child, now, stopping, said.append)  # starts it again
    stopping.set()
    crashes = [m for m in said if "unexpectedly" in m]
    assert len(crashes) == 3
    assert "exited with status 3" in crashes[0] and "the model file is corrupt" in crashes[0]
    assert [m for m in said if m.startswith("restarting")] == [
        f"restarting {name} in 0.25s",
        f"restarting {name} in 0.5s",
    ]
    assert "giving up" in said[-1]
    assert keep_going == (name != "gateway")  # giving up on the gateway stops the stack
