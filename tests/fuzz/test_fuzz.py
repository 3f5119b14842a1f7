"""Tier 4: the gRPC fuzzer (tests/fuzz/fuzzing.py) against each service and the gateway,
bounded for CI (MILO_FUZZ_EXAMPLES inputs per service, 100 by default; derandomized, so a run
is repeatable). tests/fuzz/fuzz_long.py is the longer run.

Each service must answer every input with a proper status (never UNKNOWN or INTERNAL, never
an internal class name), stay SERVING, keep its memory flat, and serve a normal request of
every RPC right after."""

from __future__ import annotations

import os

import fuzzing
import pytest

EXAMPLES = int(os.environ.get("MILO_FUZZ_EXAMPLES", "100"))
WARM_UP = 50  # inputs before memory is measured (first-use caches, allocator pools)
RSS_SLACK = 0.10  # growth allowed after the warm-up (allocator pools; fuzz_long.py measures more)


@pytest.mark.parametrize("service", ["stt", "translate", "llm", "tts", "gateway"])
def test_fuzzed_inputs_get_proper_statuses_and_the_service_holds(demo_stack, service):
    proc = demo_stack.service(service)
    pid = proc.proc.pid  # type: ignore[union-attr]
    tally = fuzzing.fuzz_service(proc.address, service, WARM_UP)
    before = fuzzing.rss_bytes(pid)
    fuzzing.fuzz_service(proc.address, service, EXAMPLES, tally=tally)
    after = fuzzing.rss_bytes(pid)
    assert not tally.faults, "\n".join(tally.faults[:20])
    assert tally.inputs >= EXAMPLES, tally
    assert proc.proc.poll() is None, proc.log()[-3000:]  # type: ignore[union-attr]
    assert fuzzing.serving(proc.address)
    assert fuzzing.normal_requests(proc.address, service) == []
    growth = (after - before) / before
    print(
        f"{service}: {tally.inputs} inputs, statuses {dict(tally.statuses)}, "
        f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB ({growth:+.1%})"
    )
    assert growth < RSS_SLACK, f"{service} RSS grew {growth:.1%} over {EXAMPLES} inputs"
