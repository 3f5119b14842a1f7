"""`milo loadtest TARGET`: load-test one service or the gateway at one address.

    milo loadtest translate --address 127.0.0.1:50052 --concurrency 4 --duration 15
    milo loadtest stt --rate 2 --requests 50 --json after.json --compare before.json
    milo loadtest llm --ramp --slo 'first.p95<800ms' --step-duration 10
    milo loadtest conversation --clients 1,2,4,8 --slo 'first_audio.p95<1500ms'

Only the address given is ever contacted. Every request has a deadline (--timeout), and
the caps --max-requests and --max-duration bound the whole invocation, warm-up and ramp
steps included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from services.loadtest.args import add_arguments
from services.loadtest.runner import Live

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")


def parse_address(text: str) -> str:
    """`host:port` (IPv6 in brackets), nothing else: no scheme, no list, no path."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not host:port (e.g. 127.0.0.1:50052, localhost:50050, [::1]:50051)"
        )
    return f"{host}:{int(port)}"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `milo loadtest`."""
    parser = sub.add_parser(
        "loadtest",
        help="load-test one service or the gateway at one address",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, parse_address)
    parser.set_defaults(func=main)


def _progress(every_s: float) -> Callable[[Live, float], None]:
    from services.loadtest.report import progress_line

    tty = sys.stderr.isatty()

    def show(live: Live, elapsed: float) -> None:
        line = progress_line(live, elapsed)
        if tty:
            sys.stderr.write("\r" + line.ljust(100)[:160])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def main(args: argparse.Namespace) -> int:
    """`milo loadtest`: run, print the report (and write/compare JSON as asked); returns 0, 1
    when the server cannot be reached, 2 for bad arguments, 130 on Ctrl-C."""
    from services.loadtest.app import Unreachable, run
    from services.loadtest.args import build_config, target_options

    if args.target == "conversation":
        from services.loadtest import conversation_app

        return conversation_app.main(args, target_options(args, os.environ))
    try:
        old = _read_old(args.compare) if args.compare else None
        cfg = build_config(args, os.environ)
    except ValueError as exc:
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 2
    for warning in _warnings(args):
        print(f"milo loadtest: note: {warning}", file=sys.stderr)
    if not args.quiet:
        every = 0.5 if sys.stderr.isatty() else args.progress_interval
        cfg = replace(cfg, progress=_progress(every), progress_every_s=every)
    try:
        doc = run(cfg)
    except Unreachable as exc:
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a payload file that cannot be used
        print(f"milo loadtest: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    if cfg.progress is not None and sys.stderr.isatty():
        sys.stderr.write("\n")
    _output(args, doc, old)
    return 0


def _output(args: argparse.Namespace, doc: dict[str, Any], old: dict[str, Any] | None) -> None:
    from services.loadtest.app import render
    from services.loadtest.report import comparison
    from services.loadtest.stats import compare

    to_json_stdout = args.json == "-"
    text = sys.stderr if to_json_stdout else sys.stdout
    print(render(doc), file=text)
    if old is not None:
        deltas = compare(old, doc)
        if old.get("target") != doc["target"]:
            print(
                f"note: comparing a {doc['target']} run with a {old.get('target')} run", file=text
            )
        print("\n" + comparison(old, deltas, str(args.compare)), file=text)
        doc["comparison"] = {
            "against": str(args.compare),
            "figures": [
                {**asdict(d), "change": d.change, "percent": d.percent, "verdict": d.verdict}
                for d in deltas
            ],
        }
    if args.json:
        body = json.dumps(doc, indent=2, ensure_ascii=False)
        if to_json_stdout:
            print(body)
        else:
            Path(args.json).write_text(body + "\n", encoding="utf-8")
            print(f"\nreport written to {args.json}", file=text)


def _read_old(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--compare {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("tool") != "milo loadtest" or "sent" not in doc:
        raise ValueError(f"--compare {path}: not a report written by milo loadtest --json")
    return doc


def _warnings(args: argparse.Namespace) -> list[str]:
    notes = []
    if args.requests is not None and args.requests > args.max_requests:
        notes.append(
            f"--requests {args.requests} is above --max-requests {args.max_requests}:"
            " the run stops at the cap"
        )
    planned = (args.duration or 0) + args.warmup
    if args.requests is None and not args.ramp and planned > args.max_duration:
        notes.append(
            f"warm-up + duration ({planned:g} s) is above --max-duration "
            f"{args.max_duration:g} s: the run stops at the cap"
        )
    return notes
