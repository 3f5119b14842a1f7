"""Load-test every target on the demo models at several concurrencies, and say where the CPU
went: `milo loadtest` (in its own process) against each service and the gateway of a demo
stack started here, one closed-loop run per (target, concurrency).

    python tests/bench/bench_loadtest.py                      # all targets at c = 1, 4, 16
    python tests/bench/bench_loadtest.py --targets tts,llm --concurrency 2,8 --duration 5

Prints each run's table, then one summary table with the CPU used by every process of the
stack during each run (from /proc), the client's own CPU, how busy the whole machine was
(all cores, every process: other work on a shared machine shows here) and the 1-minute load
average at the end, and resident memory, so that the resource that saturates first can be
read off. The JSON reports are kept in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from stack import SERVICES, DemoStack  # noqa: E402

from services.loadtest.cpu import process_cpu_s  # noqa: E402

TARGETS = ("stt", "translate", "llm", "tts", "gateway")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    p.add_argument("--duration", type=float, default=12.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=90.0, help="deadline of each request")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=48,
        help="LLM reply length for the llm and gateway runs (a spoken reply)",
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/milo-bench-loadtest"))
    return p.parse_args(argv)


def one_run(stack: DemoStack, target: str, c: int, args: argparse.Namespace) -> dict:
    svc = stack.service(target)
    pids = {name: proc.proc.pid for name, proc in stack.procs.items() if proc.proc}
    report = args.out / f"{target}-c{c}.json"
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "loadtest",
        target,
        "-a",
        svc.address,
        "-c",
        str(c),
        "-d",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--timeout",
        str(args.timeout),
        "--json",
        str(report),
        "-q",
        "--max-duration",
        str(args.warmup + args.duration + args.timeout + 30),
    ]
    if target in ("llm", "gateway"):
        cmd += ["--max-tokens", str(args.max_tokens)]
    for pid in [svc.proc.pid] if target != "gateway" else pids.values():
        cmd += ["--server-pid", str(pid)]
    before = {n: process_cpu_s(pid) or 0.0 for n, pid in pids.items()}
    start, ticks = time.monotonic(), machine_ticks()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.monotonic() - start
    busy, total = (now - then for now, then in zip(machine_ticks(), ticks, strict=True))
    doc = json.loads(report.read_text())
    doc["bench_machine_busy"] = busy / max(1, total) * 100
    doc["bench_load"] = float(Path("/proc/loadavg").read_text().split()[0])
    doc["bench_cpu"] = {
        n: ((process_cpu_s(pid) or 0.0) - before[n]) / wall * 100 for n, pid in pids.items()
    }
    doc["bench_rss_mb"] = {n: rss_mb(pid) for n, pid in pids.items()}
    return doc


def fmt(dist: dict | None, key: str) -> str:
    return f"{dist[key]:.0f}" if dist else "-"


def summary(rows: list[tuple[str, int, dict]]) -> str:
    head = (
        f"{'target':<10}{'c':>3}{'sent':>6}{'ok':>5}{'fail':>5}{'req/s':>8}{'p50':>8}"
        f"{'p90':>8}{'p99':>8}{'max':>8}{'1st p50':>9}{'1st p99':>9}  "
        f"{'CPU % by process (of 200)':<44}{'client':>7}{'machine':>8}{'load':>6}  errors"
    )
    lines = [head]
    for target, c, d in rows:
        lat, first = d.get("latency_ms"), d.get("first_result_ms")
        cpu = " ".join(f"{n}:{v:.0f}" for n, v in d["bench_cpu"].items() if v >= 1)
        errors = ",".join(f"{k}={v}" for k, v in d["errors"].items()) or "-"
        lines.append(
            f"{target:<10}{c:>3}{d['sent']:>6}{d['succeeded']:>5}{d['failed']:>5}"
            f"{d['throughput_rps']:>8.2f}{fmt(lat, 'p50'):>8}{fmt(lat, 'p90'):>8}"
            f"{fmt(lat, 'p99'):>8}{fmt(lat, 'max'):>8}{fmt(first, 'p50'):>9}{fmt(first, 'p99'):>9}"
            f"  {cpu:<44}{d['cpu']['client_percent']:>6.0f}%{d['bench_machine_busy']:>7.0f}%"
            f"{d['bench_load']:>6.1f}  {errors}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    targets = [t for t in args.targets.split(",") if t]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    stack = DemoStack(args.models.resolve())
    rows: list[tuple[str, int, dict]] = []
    try:
        for target in targets:
            if target == "gateway":
                for name in SERVICES:
                    stack.service(name)
            for c in levels:
                print(f"\n=== {target}, concurrency {c} ===", flush=True)
                doc = one_run(stack, target, c, args)
                rows.append((target, c, doc))
        memory = {n: rss_mb(p.proc.pid) for n, p in stack.procs.items() if p.proc}
    finally:
        stack.stop()
    print(
        f"\n=== summary ({os.cpu_count()} cores; latencies in ms over successful requests; "
        f"'1st' = time to first result) ==="
    )
    print(summary(rows))
    print(
        "resident memory at the end (MB): " + ", ".join(f"{n} {v:.0f}" for n, v in memory.items())
    )
    print(f"JSON reports in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
