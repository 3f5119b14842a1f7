"""Pure statistics over recorded calls: exact percentiles, a run's summary, comparisons.

Percentiles are exact, over every recorded value (no histogram buckets), by the nearest-rank
method: pNN is the smallest recorded value that at least NN% of the values do not exceed.
It is always a latency that was really observed; for 1..100 ms, p50 = 50 and p99 = 99.
Latency figures cover successful calls only: a call refused in a millisecond with
RESOURCE_EXHAUSTED would otherwise make an overloaded service look fast. Errors are
counted by status code name instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 95, 99)
OK = "OK"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of `values` (any order, not empty)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def distribution(values_s: Sequence[float]) -> dict[str, float] | None:
    """min, mean, p50/p90/p95/p99 and max of durations in seconds, as milliseconds."""
    if not values_s:
        return None
    ordered = sorted(values_s)
    out = {"min": ordered[0] * 1000, "mean": sum(ordered) / len(ordered) * 1000}
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(ordered, q) * 1000
    out["max"] = ordered[-1] * 1000
    return out


@dataclass
class Call:
    """One request as the client saw it. Times are time.monotonic() seconds."""

    start: float
    end: float
    code: str = OK  # a gRPC status code name, or an in-band code (gateway turn errors)
    first_s: float | None = None  # start to the first result, when the target has one
    spans: dict[str, float] = field(default_factory=dict)  # other named durations, seconds
    units: float = 0.0  # tokens, seconds of audio, ... (the target says what)
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.code == OK

    @property
    def latency_s(self) -> float:
        """Start to end, in seconds."""
        return self.end - self.start


def summarize(calls: Iterable[Call], skipped: int = 0) -> dict[str, Any]:
    """Counts, throughput and distributions of the measured calls (warm-up excluded)."""
    calls = list(calls)
    good = [c for c in calls if c.ok]
    errors = Counter(c.code for c in calls if not c.ok)
    samples: dict[str, str] = {}
    for c in calls:
        if not c.ok and c.code not in samples:
            samples[c.code] = c.message
    window = (max(c.end for c in calls) - min(c.start for c in calls)) if calls else 0.0
    span_names = sorted({name for c in good for name in c.spans})
    units = sum(c.units for c in good)
    return {
        "sent": len(calls),
        "succeeded": len(good),
        "failed": len(calls) - len(good),
        "skipped": skipped,
        "errors": dict(errors.most_common()),
        "error_samples": samples,
        "window_s": window,
        "throughput_rps": len(good) / window if window > 0 else 0.0,
        "latency_ms": distribution([c.latency_s for c in good]),
        "first_result_ms": distribution([c.first_s for c in good if c.first_s is not None]),
        "spans_ms": {
            n: distribution([c.spans[n] for c in good if n in c.spans]) for n in span_names
        },
        "units_total": units,
        "units_per_s": units / window if window > 0 else 0.0,
    }


def error_rate(summary: dict[str, Any]) -> float:
    """Failed over sent in a summary (0.0 when nothing was sent)."""
    sent = summary.get("sent", 0)
    return summary.get("failed", 0) / sent if sent else 0.0


@dataclass(frozen=True)
class Delta:
    """One compared figure: old, new, and whether the change is for the better."""

    metric: str
    old: float | None
    new: float | None
    higher_is_better: bool

    @property
    def change(self) -> float | None:
        """new - old; None when either is missing."""
        if self.old is None or self.new is None:
            return None
        return self.new - self.old

    @property
    def percent(self) -> float | None:
        """The change in percent of old; None when old is missing or 0."""
        if self.change is None or not self.old:
            return None
        return self.change / abs(self.old) * 100

    @property
    def verdict(self) -> str:
        """The change in words: "better", "worse", "same" or "n/a" (a figure missing)."""
        change = self.change
        if change is None:
            return "n/a"
        if abs(change) <= 1e-9 * max(1.0, abs(self.old or 0.0)):
            return "same"
        return "better" if (change > 0) == self.higher_is_better else "worse"


def _figure(summary: dict[str, Any], group: str, key: str) -> float | None:
    dist = summary.get(group)
    return None if not dist else dist.get(key)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Delta]:
    """What changed from an earlier summary to this one: throughput, percentiles, errors."""
    rows = [Delta("throughput (req/s)", old.get("throughput_rps"), new.get("throughput_rps"), True)]
    for group, label in (("latency_ms", "latency"), ("first_result_ms", "first result")):
        for key in ("p50", "p90", "p99"):
            a, b = _figure(old, group, key), _figure(new, group, key)
            if a is not None or b is not None:
                rows.append(Delta(f"{label} {key} (ms)", a, b, False))
    rows.append(Delta("error rate (%)", error_rate(old) * 100, error_rate(new) * 100, False))
    codes = sorted(set(old.get("errors", {})) | set(new.get("errors", {})))
    for code in codes:
        rows.append(
            Delta(
                f"errors {code}",
                float(old.get("errors", {}).get(code, 0)),
                float(new.get("errors", {}).get(code, 0)),
                False,
            )
        )
    return rows
