"""`milo loadtest conversation`: check the gateway, prepare the speech, warm up, run each
level, and build the report (a table, and the same figures as JSON with --json).

    milo loadtest conversation -a 127.0.0.1:50050 --clients 1,2,4,8 --turns 3 \\
        --slo 'first_audio.p95<1500ms' --json conversation.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from milo.gateway.v1 import gateway_pb2_grpc
from services.loadtest.app import Unreachable, channel_options
from services.loadtest.conversation import Payload, Plan, run_level
from services.loadtest.conversation_report import (
    Objective,
    best_level,
    parse_objective,
    summarize_level,
    table,
)
from services.loadtest.gateway import GatewayTarget
from services.loadtest.target import TargetOptions
from services.runtime.config import PORTS


@dataclass(frozen=True)
class ConversationConfig:
    """One conversation load test: the gateway's address, the numbers of simultaneous people to
    try in turn (`levels`), the plan of each person's turns, request options, an optional
    objective, and warm-up turns before measuring."""

    address: str
    levels: tuple[int, ...]
    plan: Plan
    options: TargetOptions
    objective: Objective | None = None
    warmup_turns: int = 1
    verbose: bool = True


def parse_levels(text: str) -> tuple[int, ...]:
    """`1,2,4,8` -> (1, 2, 4, 8): numbers of clients, each from 1 to 256."""
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--clients {text!r}: write numbers of clients like 1,2,4,8") from None
    if not levels or any(not 1 <= n <= 256 for n in levels):
        raise ValueError(f"--clients {text!r}: each level from 1 to 256 clients")
    return levels


async def run_conversations(cfg: ConversationConfig) -> dict[str, Any]:
    """Run every level against the gateway; returns the result document. Raises Unreachable if
    the gateway does not answer Describe, ValueError if there is nothing to send."""
    async with grpc.aio.insecure_channel(cfg.address, options=channel_options()) as channel:
        target = GatewayTarget(channel, cfg.options)  # its Describe and payloads
        try:
            server = await target.describe()
        except grpc.aio.AioRpcError as exc:
            raise Unreachable(
                f"the gateway at {cfg.address} did not answer Describe: "
                f"{exc.code().name}: {exc.details()}"
            ) from exc
        options = replace(cfg.options, language=target.language)
        with tempfile.TemporaryDirectory(prefix="milo-loadtest-") as tmp:
            payloads: list[Payload] = await target.payloads(Path(tmp))
        if not payloads:
            raise ValueError("no payloads to send")
        stub = gateway_pb2_grpc.ConversationStub(channel)
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        if cfg.warmup_turns:
            _say(cfg, f"warm-up: 1 person, {cfg.warmup_turns} turns (not counted)")
            await run_level(stub, 1, payloads, options, replace(cfg.plan, turns=cfg.warmup_turns))
        levels = []
        for clients in cfg.levels:
            _say(cfg, f"level: {clients} clients, {cfg.plan.turns} turns each")
            records, wall = await run_level(stub, clients, payloads, options, cfg.plan)
            level = summarize_level(clients, records, wall)
            if cfg.objective is not None:
                met, reason = cfg.objective.check(level)
                level["objective"] = {"met": met, "reason": reason}
            levels.append(level)
    return {
        "tool": "milo loadtest",
        "target": "conversation",
        "address": cfg.address,
        "server": server,
        "started_at": started,
        "load_average": os.getloadavg()[0],
        "settings": {
            "input": "text" if options.text_input else "speech",
            **asdict(cfg.plan),
            "buffer_ms": cfg.plan.buffer_ms,
            "think_s": cfg.plan.think_s,
        },
        "levels": levels,
        "objective": str(cfg.objective) if cfg.objective else None,
        "best_level": best_level(levels) if cfg.objective else None,
    }


def _say(cfg: ConversationConfig, line: str) -> None:
    if cfg.verbose:
        print(line, file=sys.stderr, flush=True)


def build_config(args: argparse.Namespace, options: TargetOptions) -> ConversationConfig:
    """The ConversationConfig from the command line; raises ValueError for bad arguments."""
    if args.text_output:
        raise ValueError("conversation measures reply audio: drop --text-output")
    objective = parse_objective(args.slo, args.max_error_rate) if args.slo else None
    plan = Plan(
        turns=args.turns,
        think_s=args.think_time,
        timeout_s=args.timeout,
        buffer_ms=args.player_buffer_ms,
        seed=args.seed,
    )
    address = args.address or f"127.0.0.1:{PORTS['gateway'][0]}"
    return ConversationConfig(
        address,
        parse_levels(args.clients),
        plan,
        options,
        objective,
        args.warmup_turns,
        not args.quiet,
    )


def main(args: argparse.Namespace, options: TargetOptions) -> int:
    """`milo loadtest conversation`: run and report; returns 0, 1 when the gateway cannot be
    reached, 2 for bad arguments, 130 on Ctrl-C."""
    try:
        cfg = build_config(args, options)
    except ValueError as exc:
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 2
    try:
        doc = asyncio.run(run_conversations(cfg))
    except Unreachable as exc:
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    to_stdout = args.json == "-"
    print(table(doc), file=sys.stderr if to_stdout else sys.stdout)
    if args.json:
        body = json.dumps(doc, indent=2, ensure_ascii=False)
        if to_stdout:
            print(body)
        else:
            Path(args.json).write_text(body + "\n", encoding="utf-8")
    return 0
