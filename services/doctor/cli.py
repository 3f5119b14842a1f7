"""`milo doctor [--models DIR]`: check, before anything starts, that Milo will run.

    milo doctor                        every model loaded on the CPU, the GPU, ports, network
    milo doctor --no-load              the quick checks only (what `milo up` runs at start)
    milo doctor --only stt --no-ports  one container's check (the images run this first)

Exit status 0 when nothing would fail (warnings allowed), 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.doctor.gpu import check_gpu
from services.doctor.models import check_models
from services.doctor.report import Finding, exit_code, format_report, report_json
from services.doctor.system import check_offline, check_ports, planned_ports
from services.models.layout import COMPONENTS, Component, default_models_dir, read_manifest


def add_commands(subparsers: Any) -> None:
    """Register `milo doctor` on the main CLI."""
    parser = subparsers.add_parser(
        "doctor",
        help="check models, GPU, ports and offline mode before starting Milo",
        description="Check that every model folder is complete and loadable, that the GPU "
        "fits the models, that the ports are free and that nothing needs the network. Says "
        "what is wrong and what to run; exits 1 when something would fail.",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="models folder (default: $MILO_MODELS_DIR or ./models)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=COMPONENTS,
        default=list(COMPONENTS),
        help="check only these models (a container checks its own)",
    )
    parser.add_argument(
        "--language",
        help="STT language (default: $MILO_STT_LANGUAGE, else mg, "
        "or en on an English-only demo set as milo up does)",
    )
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="skip loading each model with its engine (quick checks only)",
    )
    parser.add_argument("--no-ports", action="store_true", help="skip the free-port check")
    parser.add_argument("--base-port", type=int, default=0, help="as for milo up")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_doctor)


def stt_language(
    root: Path, explicit: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The language STT will be asked for: the flag, MILO_STT_LANGUAGE, else `en` on an
    English-only set (as `milo up` chooses), else `mg`."""
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get("MILO_STT_LANGUAGE"):
        return env["MILO_STT_LANGUAGE"]
    languages = read_manifest(root).get("stt", {}).get("languages")
    return "en" if languages == ["en"] else "mg"


def diagnose(
    root: Path,
    *,
    only: Sequence[Component] = COMPONENTS,
    language: str | None = None,
    load: bool = True,
    ports: bool = True,
    base_port: int = 0,
    network: bool = True,
) -> list[Finding]:
    """Every check, in the order a person fixes them: models, GPU, ports, network."""
    findings = check_models(
        root, stt_language=stt_language(root, language), load=load, only=tuple(only)
    )
    findings += check_gpu(root, only=tuple(only))
    if ports:
        findings += check_ports(planned_ports(base_port))
    if network:
        findings += check_offline()
    return findings


def run_doctor(args: argparse.Namespace) -> int:
    """`milo doctor`: run the checks, print them (text, or JSON with `--json`); returns 0 when
    nothing failed (warnings allowed), 1 otherwise."""
    root: Path = args.models or default_models_dir()
    findings = diagnose(
        root,
        only=args.only,
        language=args.language,
        load=not args.no_load,
        ports=not args.no_ports,
        base_port=args.base_port,
    )
    if args.json:
        print(json.dumps(report_json(findings), ensure_ascii=False, indent=2))
    else:
        print(f"milo doctor: {root}")
        print(format_report(findings))
    return exit_code(findings)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.doctor`: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="milo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
