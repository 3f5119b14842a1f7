"""The ramp: find the highest arrival rate that meets a latency objective.

Open-loop steps at rising rates (times `factor` each step) until one misses the objective,
then `refine` bisection steps between the last rate that met it and the first that did
not. A step meets the objective when its percentile is within the limit, its error rate is
at most `max_error_rate`, and no arrival had to be skipped. Pure search logic: the caller
passes the function that runs one step and returns its summary (None: the caps are spent).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.loadtest.stats import error_rate

_SLO = re.compile(
    r"^\s*(?:(?P<metric>latency|first|ttfr)\.)?(?P<q>p50|p90|p95|p99|max)\s*<=?\s*"
    r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)?\s*$"
)
METRICS = {"latency": "latency_ms", "first": "first_result_ms", "ttfr": "first_result_ms"}


@dataclass(frozen=True)
class Slo:
    """`p95<500ms`: 95% of successful requests within 500 ms."""

    group: str  # the summary's distribution: latency_ms or first_result_ms
    key: str  # p50, p90, p95, p99 or max
    limit_ms: float

    def value(self, summary: dict[str, Any]) -> float | None:
        """The summary's figure for this objective, in milliseconds; None without successes."""
        dist = summary.get(self.group)
        return None if not dist else float(dist[self.key])

    def __str__(self) -> str:
        prefix = "" if self.group == "latency_ms" else "first."
        return f"{prefix}{self.key} < {self.limit_ms:g} ms"


def parse_slo(text: str) -> Slo:
    """`p95<500ms`, `p99<1.5s`, `first.p90<300ms` (time to first result), `max<2s`."""
    match = _SLO.match(text)
    if not match:
        raise ValueError(
            f"latency objective {text!r} not understood: write it like "
            "p95<500ms, p99<1.5s or first.p90<300ms (p50, p90, p95, p99, max)"
        )
    value = float(match["value"]) * (1000 if match["unit"] == "s" else 1)
    if value <= 0:
        raise ValueError(f"latency objective {text!r}: the limit must be above 0, e.g. p95<500ms")
    return Slo(METRICS[match["metric"] or "latency"], match["q"], value)


@dataclass(frozen=True)
class RampPlan:
    """A ramp: from `start_rate` requests per second, times `factor` while the objective holds
    (up to `max_rate`), then `refine` bisection steps; a step fails above `max_error_rate`."""

    slo: Slo
    start_rate: float = 1.0
    factor: float = 2.0
    max_rate: float = 1000.0
    refine: int = 2
    max_error_rate: float = 0.01


@dataclass
class Step:
    """One ramp step: its rate (requests per second), summary, and whether it met the objective
    and why."""

    rate: float
    summary: dict[str, Any]
    passed: bool
    reason: str


def judge(plan: RampPlan, summary: dict[str, Any]) -> tuple[bool, str]:
    """Whether a step met the objective, and why not."""
    if not summary.get("succeeded"):
        return False, "no request succeeded"
    if error_rate(summary) > plan.max_error_rate:
        return False, f"error rate {error_rate(summary):.1%} > {plan.max_error_rate:.1%}"
    if summary.get("skipped"):
        return False, f"{summary['skipped']} arrivals skipped (too many in flight)"
    value = plan.slo.value(summary)
    if value is None:
        return False, "the target reports no first result"
    if value > plan.slo.limit_ms:
        return False, f"{plan.slo.key} {value:.0f} ms > {plan.slo.limit_ms:g} ms"
    return True, f"{plan.slo.key} {value:.0f} ms"


async def find_max_rate(
    plan: RampPlan, run_step: Callable[[float], Awaitable[dict[str, Any] | None]]
) -> tuple[float | None, list[Step]]:
    """(the highest rate that met the objective or None, every step run)."""
    steps: list[Step] = []

    async def attempt(rate: float) -> bool | None:
        summary = await run_step(rate)
        if summary is None:
            return None
        passed, reason = judge(plan, summary)
        steps.append(Step(rate, summary, passed, reason))
        return passed

    good: float | None = None
    bad: float | None = None
    rate = plan.start_rate
    while rate <= plan.max_rate:
        passed = await attempt(rate)
        if passed is None:
            return good, steps
        if not passed:
            bad = rate
            break
        good, rate = rate, round(rate * plan.factor, 6)
    if good is None or bad is None:
        return good, steps
    for _ in range(plan.refine):
        mid = round((good + bad) / 2, 6)
        passed = await attempt(mid)
        if passed is None:
            break
        good, bad = (mid, bad) if passed else (good, mid)
    return good, steps
