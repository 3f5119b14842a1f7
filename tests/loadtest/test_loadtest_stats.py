"""Tier 1: percentiles, summaries, comparisons, latency objectives and the ramp search."""

from __future__ import annotations

import random

import pytest

from services.loadtest.ramp import RampPlan, Slo, find_max_rate, judge, parse_slo
from services.loadtest.stats import Call, compare, distribution, percentile, summarize


def test_percentiles_of_a_known_set_are_observed_values_by_nearest_rank():
    values = list(range(1, 101))
    random.Random(1).shuffle(values)
    assert [percentile(values, q) for q in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert percentile([10, 20, 30, 40], 50) == 20  # rank ceil(0.5 * 4) = 2
    assert percentile([10, 20, 30, 40], 51) == 30
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 1000], 90) == 90
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 1000], 99) == 1000


def test_percentile_refuses_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_distribution_is_in_milliseconds():
    dist = distribution([0.001 * i for i in range(1, 101)])
    assert dist is not None
    assert dist["p50"] == pytest.approx(50) and dist["p90"] == pytest.approx(90)
    assert dist["p99"] == pytest.approx(99) and dist["max"] == pytest.approx(100)
    assert dist["min"] == pytest.approx(1) and dist["mean"] == pytest.approx(50.5)
    assert distribution([]) is None


def test_summary_counts_add_up_and_latency_covers_successes_only():
    calls = [
        Call(0.0, 0.1 * i, first_s=0.01 * i, spans={"tail": 0.05}, units=2) for i in range(1, 11)
    ]
    calls += [
        Call(0.5, 0.501, "RESOURCE_EXHAUSTED", message="server busy"),
        Call(0.5, 0.502, "RESOURCE_EXHAUSTED", message="again"),
        Call(0.2, 4.0, "DEADLINE_EXCEEDED", message="late"),
    ]
    s = summarize(calls, skipped=3)
    assert (s["sent"], s["succeeded"], s["failed"], s["skipped"]) == (13, 10, 3, 3)
    assert s["errors"] == {"RESOURCE_EXHAUSTED": 2, "DEADLINE_EXCEEDED": 1}
    assert s["error_samples"]["RESOURCE_EXHAUSTED"] == "server busy"
    assert s["latency_ms"]["max"] == pytest.approx(1000)  # the 3.8 s failure is not in it
    assert s["latency_ms"]["p50"] == pytest.approx(500)
    assert s["first_result_ms"]["p90"] == pytest.approx(90)
    assert s["spans_ms"]["tail"]["p99"] == pytest.approx(50)
    assert s["window_s"] == pytest.approx(4.0)
    assert s["throughput_rps"] == pytest.approx(10 / 4.0)
    assert s["units_total"] == 20 and s["units_per_s"] == pytest.approx(5.0)


def test_summary_of_nothing():
    s = summarize([])
    assert (s["sent"], s["succeeded"], s["throughput_rps"], s["latency_ms"]) == (0, 0, 0.0, None)


def _doc(
    rps: float, p50: float, p90: float, p99: float, errors: dict[str, int], sent: int = 100
) -> dict:
    failed = sum(errors.values())
    return {
        "throughput_rps": rps,
        "sent": sent,
        "failed": failed,
        "errors": errors,
        "latency_ms": {"p50": p50, "p90": p90, "p99": p99},
        "first_result_ms": None,
    }


def test_compare_reports_each_difference_with_its_direction():
    old = _doc(10.0, 100.0, 200.0, 400.0, {"RESOURCE_EXHAUSTED": 5})
    new = _doc(12.5, 150.0, 200.0, 300.0, {"DEADLINE_EXCEEDED": 2})
    rows = {d.metric: d for d in compare(old, new)}
    tp = rows["throughput (req/s)"]
    assert (tp.change, tp.percent, tp.verdict) == (2.5, 25.0, "better")
    p50 = rows["latency p50 (ms)"]
    assert (p50.change, p50.percent, p50.verdict) == (50.0, 50.0, "worse")
    assert rows["latency p90 (ms)"].verdict == "same"
    p99 = rows["latency p99 (ms)"]
    assert (p99.percent, p99.verdict) == (-25.0, "better")
    errors = rows["error rate (%)"]
    assert (errors.old, errors.new, errors.verdict) == (5.0, 2.0, "better")
    assert (rows["errors RESOURCE_EXHAUSTED"].old, rows["errors RESOURCE_EXHAUSTED"].new) == (5, 0)
    late = rows["errors DEADLINE_EXCEEDED"]
    assert (late.change, late.percent, late.verdict) == (2, None, "worse")
    assert not any(m.startswith("first result") for m in rows)


def test_compare_without_an_old_figure_says_so():
    old = _doc(10.0, 100.0, 200.0, 400.0, {})
    old["latency_ms"] = None
    rows = {d.metric: d for d in compare(old, _doc(10.0, 1.0, 2.0, 3.0, {}))}
    assert rows["latency p50 (ms)"].change is None and rows["latency p50 (ms)"].verdict == "n/a"
    assert rows["throughput (req/s)"].verdict == "same"


@pytest.mark.parametrize(
    ("text", "slo"),
    [
        ("p95<500ms", Slo("latency_ms", "p95", 500)),
        ("p99 <= 1.5s", Slo("latency_ms", "p99", 1500)),
        ("first.p90<300", Slo("first_result_ms", "p90", 300)),
        ("ttfr.p50<2s", Slo("first_result_ms", "p50", 2000)),
        ("latency.max<100ms", Slo("latency_ms", "max", 100)),
    ],
)
def test_latency_objectives_parse(text, slo):
    assert parse_slo(text) == slo


@pytest.mark.parametrize(
    "text", ["p95>500ms", "p42<10ms", "p95<", "fast", "p95<0ms", "tokens.p95<3ms"]
)
def test_bad_latency_objectives_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match="p95<500ms"):
        parse_slo(text)


def _step_summary(rate: float, capacity: float) -> dict:
    """A service that meets 'p95<100ms' up to `capacity` req/s and slows down past it."""
    p95 = 50.0 if rate <= capacity else 50.0 * rate / capacity * 3
    return {
        "sent": 10,
        "succeeded": 10,
        "failed": 0,
        "skipped": 0,
        "throughput_rps": rate,
        "latency_ms": {"p95": p95},
    }


async def test_ramp_doubles_then_bisects_to_the_highest_passing_rate():
    plan = RampPlan(parse_slo("p95<100ms"), start_rate=1, factor=2, max_rate=100, refine=2)
    tried: list[float] = []

    async def run_step(rate: float) -> dict:
        tried.append(rate)
        return _step_summary(rate, capacity=7.0)

    best, steps = await find_max_rate(plan, run_step)
    assert tried == [1, 2, 4, 8, 6, 7]
    assert best == 7
    assert [s.passed for s in steps] == [True, True, True, False, True, True]
    assert "p95" in steps[3].reason


async def test_ramp_stops_when_the_caps_are_spent_and_when_nothing_passes():
    plan = RampPlan(parse_slo("p95<100ms"), start_rate=1, factor=2, max_rate=100)

    async def capped(rate: float) -> dict | None:
        return _step_summary(rate, 100) if rate < 4 else None

    best, steps = await find_max_rate(plan, capped)
    assert (best, [s.rate for s in steps]) == (2, [1, 2])

    async def hopeless(rate: float) -> dict:
        return _step_summary(rate, capacity=0.5)

    best, steps = await find_max_rate(plan, hopeless)
    assert (best, len(steps)) == (None, 1)


def test_a_step_with_errors_or_skipped_arrivals_misses_the_objective():
    plan = RampPlan(parse_slo("p95<100ms"), max_error_rate=0.05)
    good = _step_summary(1, 10)
    assert judge(plan, good) == (True, "p95 50 ms")
    assert not judge(plan, {**good, "failed": 1, "sent": 10})[0]
    assert judge(plan, {**good, "skipped": 2})[1].startswith("2 arrivals skipped")
    assert judge(plan, {**good, "succeeded": 0})[1] == "no request succeeded"
    first = RampPlan(parse_slo("first.p95<100ms"))
    assert judge(first, good)[1] == "the target reports no first result"
