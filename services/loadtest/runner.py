"""Drive a target with a load shape and record every call.

Closed loop: `concurrency` workers, each sending its next request as soon as its last one
ends. Open loop: requests start at a fixed arrival rate (Poisson or evenly spaced) whether
or not earlier ones have finished, so a slow service builds a queue and it shows. A run
lasts `duration_s` or `requests` measured requests, after `warmup_s` seconds whose requests
are sent but not recorded. The caps (`Limits`) always apply, across ramp steps too: past
`max_duration_s` every call in flight is cancelled and recorded as CANCELLED, so that
sent = succeeded + failed holds; every request also carries a gRPC deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from services.loadtest.stats import Call
from services.loadtest.target import InBandError, Probe, Target

CLIENT_GRACE_S = 2.0  # past the gRPC deadline, the client gives up on its own


@dataclass(frozen=True)
class Limits:
    """Hard caps on a whole invocation (warm-up and every ramp step included)."""

    max_requests: int = 10_000
    max_duration_s: float = 600.0
    max_in_flight: int = 256  # open loop: arrivals past this are skipped, not sent


@dataclass(frozen=True)
class Shape:
    """The load: `concurrency` workers in a closed loop, or `rate` arrivals per second (Poisson
    or uniform) in an open loop; for `duration_s` seconds or `requests` requests after `warmup_s`
    seconds of warm-up; `timeout_s` per request; `seed` for the arrivals."""

    concurrency: int = 1
    rate: float | None = None  # requests per second; None: closed loop
    arrivals: Literal["poisson", "uniform"] = "poisson"
    duration_s: float | None = 10.0
    requests: int | None = None
    warmup_s: float = 1.0
    timeout_s: float = 30.0
    seed: int = 0
    # Closed loop: after RESOURCE_EXHAUSTED a worker waits the server's retry hint (at most
    # this long; 0: retries at once, a hot loop that can starve the server it measures).
    busy_pause_max_s: float = 2.0


def arrival_gaps(rate: float, kind: str, rng: random.Random) -> Iterator[float]:
    """Seconds between successive arrivals: exponential (Poisson process) or constant."""
    while True:
        yield rng.expovariate(rate) if kind == "poisson" else 1.0 / rate


class Budget:
    """What is left of the caps; shared by the ramp's steps."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_duration_s
        self.requests_left = limits.max_requests

    def remaining_s(self) -> float:
        """Seconds left before the max-duration cap."""
        return max(0.0, self.deadline - time.monotonic())

    def take(self) -> bool:
        """Take one request from the max-requests cap; False when none is left."""
        if self.requests_left <= 0:
            return False
        self.requests_left -= 1
        return True


@dataclass
class Live:
    """Counters the progress line reads while the run goes on."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    warmup_sent: int = 0
    skipped: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=200))  # last successes


@dataclass
class RunResult:
    """What a run gives: the measured calls, arrivals skipped (too many in flight), warm-up
    requests sent, why it stopped, and its length in seconds."""

    calls: list[Call]
    skipped: int
    warmup_sent: int
    stopped_by: str
    elapsed_s: float


class Run:
    """One run of one shape; `await execute()` once."""

    def __init__(
        self,
        target: Target,
        payloads: Sequence[Any],
        shape: Shape,
        budget: Budget,
        live: Live | None = None,
    ) -> None:
        if not payloads:
            raise ValueError("no payloads to send")
        self.target, self.shape, self.budget = target, shape, budget
        self.live = live or Live()
        self._payloads = itertools.cycle(payloads)
        self.calls: list[Call] = []
        self.stopped_by = ""
        self._measured_started = 0
        self._t0 = self._measure_from = 0.0
        self._measure_until = math.inf

    async def execute(self) -> RunResult:
        """Run the shape (warm-up, then measure) until done or a cap is reached."""
        s, now = self.shape, time.monotonic()
        self._t0, self._measure_from = now, now + s.warmup_s
        if s.duration_s is not None:
            self._measure_until = self._measure_from + s.duration_s
        try:
            async with asyncio.timeout(self.budget.remaining_s()):
                await (self._closed() if s.rate is None else self._open(s.rate))
        except TimeoutError:
            self.stopped_by = "the max-duration cap"
        return RunResult(
            self.calls,
            self.live.skipped,
            self.live.warmup_sent,
            self.stopped_by or "done",
            time.monotonic() - self._t0,
        )

    def _admit(self, now: float) -> Literal["warmup", "measured"] | None:
        """May a request start now, and is it measured? None: the run is over."""
        measured = now >= self._measure_from
        if measured and now >= self._measure_until:
            self.stopped_by = self.stopped_by or "duration"
            return None
        requests = self.shape.requests
        if measured and requests is not None and self._measured_started >= requests:
            self.stopped_by = self.stopped_by or "request count"
            return None
        if not self.budget.take():
            self.stopped_by = "the max-requests cap"
            return None
        self._measured_started += measured
        return "measured" if measured else "warmup"

    async def _closed(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self.shape.concurrency):
                group.create_task(self._worker())

    async def _worker(self) -> None:
        while (kind := self._admit(time.monotonic())) is not None:
            pause = await self._one(kind == "measured")
            if pause and self.shape.busy_pause_max_s > 0:
                await asyncio.sleep(min(pause, self.shape.busy_pause_max_s))

    async def _open(self, rate: float) -> None:
        gaps = arrival_gaps(rate, self.shape.arrivals, random.Random(self.shape.seed))
        at = time.monotonic()
        async with asyncio.TaskGroup() as group:
            while True:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                if self.live.in_flight >= self.budget.limits.max_in_flight:
                    self.live.skipped += at >= self._measure_from
                    if at >= self._measure_until:
                        break
                elif (kind := self._admit(at)) is None:
                    break
                else:
                    group.create_task(self._one(kind == "measured"))
                at += next(gaps)

    async def _one(self, measured: bool) -> float:
        """One request, recorded if measured; the pause the server asked for, in seconds."""
        live, payload = self.live, next(self._payloads)
        live.in_flight += 1
        if measured:
            live.sent += 1
        else:
            live.warmup_sent += 1
        probe = Probe()
        code, message = "CANCELLED", "cancelled by the load tester at the max-duration cap"
        pause = 0.0
        try:
            code, message, pause = await _attempt(self.target, payload, probe, self.shape.timeout_s)
        finally:
            live.in_flight -= 1
            if measured:
                self._record(
                    Call(
                        probe.start,
                        time.monotonic(),
                        code,
                        probe.first_s,
                        probe.spans,
                        probe.units,
                        message,
                    )
                )
        return pause

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if call.ok:
            self.live.succeeded += 1
            self.live.recent.append(call.latency_s)
        else:
            self.live.failed += 1


def retry_hint_s(exc: grpc.aio.AioRpcError) -> float:
    """The pause a RESOURCE_EXHAUSTED reply asks for (grpc-retry-pushback-ms), else 0.1 s."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return 0.0
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-retry-pushback-ms":
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                break
    return 0.1


async def _attempt(
    target: Target, payload: Any, probe: Probe, deadline_s: float
) -> tuple[str, str, float]:
    """Run one call: (status code name, message, pause asked for). Raises only when
    cancelled."""
    try:
        async with asyncio.timeout(deadline_s + CLIENT_GRACE_S):
            await target.call(payload, probe, deadline_s)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or "", retry_hint_s(exc)
    except InBandError as exc:
        return exc.code, exc.message, 0.0
    except TimeoutError:
        return "DEADLINE_EXCEEDED", "no answer within the timeout (client side)", 0.0
    except Exception as exc:  # a payload or client bug: recorded, the run goes on
        return "CLIENT_ERROR", f"{type(exc).__name__}: {exc}", 0.0
    return "OK", "", 0.0


async def run_with_progress(
    run: Run, show: Callable[[Live, float], None] | None, every_s: float
) -> RunResult:
    """Execute `run`, calling `show(live, elapsed)` every `every_s` seconds meanwhile."""
    if show is None:
        return await run.execute()
    start = time.monotonic()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(every_s)
            show(run.live, time.monotonic() - start)

    task = asyncio.create_task(ticker())
    try:
        return await run.execute()
    finally:
        task.cancel()
