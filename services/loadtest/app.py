"""One `milo loadtest` invocation: connect to the one address given, check the server,
prepare payloads, run the load (or the ramp), and build the report document."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from services.loadtest import report
from services.loadtest.cpu import CpuMeter
from services.loadtest.ramp import RampPlan, Step, find_max_rate
from services.loadtest.runner import Budget, Limits, Live, Run, RunResult, Shape, run_with_progress
from services.loadtest.stats import summarize
from services.loadtest.target import Target, TargetOptions, make_target

log = logging.getLogger(__name__)
FORMAT = 1  # of the JSON document; --compare reads the same


def channel_options() -> list[tuple[str, Any]]:
    """The tool talks to the address it is given and nothing else: no proxy from the
    environment, no client-side retries (the errors are what is being measured)."""
    return [
        ("grpc.enable_http_proxy", 0),
        ("grpc.enable_retries", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


@dataclass(frozen=True)
class Config:
    """One `milo loadtest` run: the target's name and address, the load `shape`, the caps, the
    request options, an optional ramp (steps of `step_duration_s` seconds), server process ids to
    measure CPU of, and a progress callback called every `progress_every_s` seconds."""

    target: str
    address: str
    shape: Shape = field(default_factory=Shape)
    limits: Limits = field(default_factory=Limits)
    options: TargetOptions = field(default_factory=TargetOptions)
    ramp: RampPlan | None = None
    step_duration_s: float = 10.0
    server_pids: tuple[int, ...] = ()
    progress: Callable[[Live, float], None] | None = None
    progress_every_s: float = 5.0


class Unreachable(Exception):
    """The server did not answer its Describe: nothing was sent."""


async def run_loadtest(cfg: Config) -> dict[str, Any]:
    """Run the load test described by `cfg`; the report document (see `table`)."""
    async with grpc.aio.insecure_channel(cfg.address, options=channel_options()) as channel:
        target = make_target(cfg.target, channel, cfg.options)
        try:
            server = await target.describe()
        except grpc.aio.AioRpcError as exc:
            raise Unreachable(
                f"{cfg.target} at {cfg.address} did not answer Describe: "
                f"{exc.code().name}: {exc.details()}"
            ) from exc
        with tempfile.TemporaryDirectory(prefix="milo-loadtest-") as tmp:
            items = await target.payloads(Path(tmp))
        log.info("%s: %d payloads; %s", cfg.target, len(items), server)
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        meter, budget = CpuMeter(cfg.server_pids), Budget(cfg.limits)
        meter.start()
        if cfg.ramp is not None:
            doc = await _ramp(cfg, cfg.ramp, target, items, budget)
        else:
            result = await run_with_progress(
                Run(target, items, cfg.shape, budget), cfg.progress, cfg.progress_every_s
            )
            doc = document(cfg, target, cfg.shape, result)
        doc.update(server=server, started_at=started, cpu=meter.stop())
        return doc


def document(cfg: Config, target: Target, shape: Shape, result: RunResult) -> dict[str, Any]:
    """The result document (JSON-ready, format FORMAT): what was run, how it stopped, and the
    summary of the measured calls (stats.summarize)."""
    return {
        "tool": "milo loadtest",
        "format": FORMAT,
        "target": cfg.target,
        "address": cfg.address,
        "shape": asdict(shape),
        "limits": asdict(cfg.limits),
        "stopped_by": result.stopped_by,
        "elapsed_s": result.elapsed_s,
        "warmup_sent": result.warmup_sent,
        "first_result": target.first_result,
        "units": target.units,
        **summarize(result.calls, result.skipped),
    }


async def _ramp(
    cfg: Config, plan: RampPlan, target: Target, items: list[Any], budget: Budget
) -> dict[str, Any]:
    """Open-loop steps; the document of the best step, with every step under "ramp"."""
    docs: dict[float, dict[str, Any]] = {}

    async def step(rate: float) -> dict[str, Any] | None:
        warmup = cfg.shape.warmup_s if not docs else 0.0
        if budget.requests_left <= 0 or budget.remaining_s() < warmup + cfg.step_duration_s:
            return None
        shape = replace(
            cfg.shape, rate=rate, duration_s=cfg.step_duration_s, requests=None, warmup_s=warmup
        )
        if cfg.progress is not None:
            print(f"ramp step: {rate:g} req/s for {cfg.step_duration_s:g} s", file=sys.stderr)
        result = await run_with_progress(
            Run(target, items, shape, budget), cfg.progress, cfg.progress_every_s
        )
        docs[rate] = document(cfg, target, shape, result)
        return docs[rate]

    best, steps = await find_max_rate(plan, step)
    if not steps:
        raise Unreachable(
            "the caps (--max-duration, --max-requests) leave no room for one ramp step"
        )
    doc = dict(docs[best] if best is not None else steps[0].summary)
    doc["ramp"] = {
        "objective": str(plan.slo),
        "best_rate": best,
        "steps": [
            {"rate": s.rate, "passed": s.passed, "reason": s.reason, "summary": s.summary}
            for s in steps
        ],
    }
    return doc


def render(doc: dict[str, Any]) -> str:
    """The final report; with a ramp, its steps first."""
    text = report.table(doc)
    ramp = doc.get("ramp")
    if ramp:
        steps = [Step(s["rate"], s["summary"], s["passed"], s["reason"]) for s in ramp["steps"]]
        best = ramp["best_rate"]
        text = (
            report.ramp_table(ramp["objective"], best, steps)
            + "\n\n"
            + ("best step:\n" if best is not None else "first step:\n")
            + text
        )
    return text


def run(cfg: Config) -> dict[str, Any]:
    """Run the load test on a new event loop; returns its result document. Raises Unreachable
    when the server does not answer Describe."""
    return asyncio.run(run_loadtest(cfg))
