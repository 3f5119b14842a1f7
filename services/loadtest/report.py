"""What a person reads: the live progress line, the final table, the comparison, the ramp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.loadtest.ramp import Step
from services.loadtest.runner import Live
from services.loadtest.stats import Delta, percentile

COLUMNS = ("p50", "p90", "p99", "max", "mean")


def progress_line(live: Live, elapsed_s: float) -> str:
    """One progress line: requests sent, ok, failed, in flight, and the recent median latency."""
    p50 = f"{percentile(live.recent, 50) * 1000:.0f} ms" if live.recent else "-"
    warm = f" (warm-up {live.warmup_sent})" if live.warmup_sent else ""
    skipped = f", skipped {live.skipped}" if live.skipped else ""
    return (
        f"[{elapsed_s:6.1f}s] sent {live.sent}{warm}, ok {live.succeeded}, "
        f"failed {live.failed}, in flight {live.in_flight}{skipped}, recent p50 {p50}"
    )


def _shape_line(doc: dict[str, Any]) -> str:
    shape = doc["shape"]
    if shape.get("rate") is None:
        load = f"closed loop, concurrency {shape['concurrency']}"
    else:
        load = f"open loop, {shape['rate']:g} req/s {shape['arrivals']} arrivals"
    amount = (
        f"{shape['requests']} requests"
        if shape.get("requests") is not None
        else f"{shape['duration_s']:g} s"
    )
    return (
        f"{load}, {amount} after {shape['warmup_s']:g} s warm-up "
        f"({doc['warmup_sent']} warm-up requests not counted); stopped by {doc['stopped_by']}"
    )


def _rate_line(doc: dict[str, Any]) -> str:
    parts = [f"throughput {doc['throughput_rps']:.2f} req/s over {doc['window_s']:.1f} s"]
    if doc.get("units"):
        parts.append(f"{doc['units_per_s']:.1f} {doc['units']}/s")
    cpu = doc.get("cpu") or {}
    if cpu.get("client_percent") is not None:
        parts.append(f"client CPU {cpu['client_percent']:.0f}%")
    if cpu.get("server_percent") is not None:
        parts.append(f"server CPU {cpu['server_percent']:.0f}% of {cpu['cores'] * 100}%")
    return "   ".join(parts)


def _distribution_rows(doc: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    rows = []
    if doc.get("latency_ms"):
        rows.append(("latency", doc["latency_ms"]))
    if doc.get("first_result_ms"):
        rows.append((doc.get("first_result") or "first result", doc["first_result_ms"]))
    rows.extend((name, dist) for name, dist in (doc.get("spans_ms") or {}).items() if dist)
    return rows


def table(doc: dict[str, Any]) -> str:
    """The final report of one run, as text."""
    lines = [
        f"milo loadtest {doc['target']} {doc['address']}  ({doc.get('server', '')})",
        _shape_line(doc),
        f"sent {doc['sent']}   succeeded {doc['succeeded']}   failed {doc['failed']}"
        + (f"   skipped {doc['skipped']} (max in flight)" if doc.get("skipped") else ""),
        _rate_line(doc),
        "",
    ]
    rows = _distribution_rows(doc)
    if rows:
        width = max(len(name) for name, _ in rows) + 5
        lines.append(
            f"{'(ms, successful requests)':<{width}}" + "".join(f"{c:>9}" for c in COLUMNS)
        )
        for name, dist in rows:
            lines.append(f"{name:<{width}}" + "".join(f"{dist[c]:>9.1f}" for c in COLUMNS))
    else:
        lines.append("no successful request: no latency figures")
    lines.append("")
    lines.extend(error_lines(doc))
    return "\n".join(lines)


def error_lines(doc: dict[str, Any]) -> list[str]:
    """The errors by status code, with the count and first message of each."""
    errors = doc.get("errors") or {}
    if not errors:
        return ["errors: none"]
    width = max(len(code) for code in errors) + 2
    lines = [f"{'errors by status code':<{width}}  count  first message"]
    for code, count in errors.items():
        message = (doc.get("error_samples") or {}).get(code, "")
        lines.append(f"{code:<{width}}  {count:>5}  {message[:100]}")
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def comparison(old_doc: dict[str, Any], deltas: Sequence[Delta], old_name: str) -> str:
    """The change from an earlier run, one figure a line."""
    lines = [
        f"compared with {old_name} ({old_doc.get('target')} at "
        f"{old_doc.get('address')}, {old_doc.get('started_at', '?')}):",
        f"{'figure':<24}{'old':>12}{'new':>12}{'change':>12}{'%':>9}  verdict",
    ]
    for d in deltas:
        pct = "-" if d.percent is None else f"{d.percent:+.1f}%"
        change = "-" if d.change is None else f"{d.change:+.2f}"
        lines.append(
            f"{d.metric:<24}{_num(d.old):>12}{_num(d.new):>12}{change:>12}{pct:>9}  {d.verdict}"
        )
    return "\n".join(lines)


def ramp_table(slo: str, best: float | None, steps: Sequence[Step]) -> str:
    """The ramp's steps as a table, with the best rate meeting `slo`."""
    lines = [
        f"ramp to the highest rate meeting {slo}:",
        f"{'rate':>8} {'req/s':>8} {'p50':>9} {'p90':>9} {'p99':>9} {'errors':>7}  result",
    ]
    for step in steps:
        s, lat = step.summary, step.summary.get("latency_ms") or {}
        cells = "".join(
            f"{lat[k]:>9.0f}" if k in lat else f"{'-':>9}" for k in ("p50", "p90", "p99")
        )
        lines.append(
            f"{step.rate:>8.2f} {s['throughput_rps']:>8.2f}{cells} {s['failed']:>7}  "
            f"{'meets' if step.passed else 'misses'}: {step.reason}"
        )
    lines.append(
        f"highest rate meeting {slo}: "
        + (
            f"{best:g} req/s"
            if best is not None
            else "none (even the first step missed it: lower --ramp-start)"
        )
    )
    return "\n".join(lines)
