"""Helpers for components that register commands on the one `milo` CLI."""

from __future__ import annotations

import argparse
import os
from typing import Any


def command_group(subparsers: Any, name: str, help_text: str, metavar: str = "TARGET") -> Any:
    """The subparsers of top-level command `name` (e.g. `eval`), created here or shared
    with another component that registered it first (argparse refuses a second parser of
    the same name)."""
    existing = subparsers.choices.get(name)
    if existing is None:
        existing = subparsers.add_parser(name, help=help_text)
        existing.add_subparsers(dest=f"{name}_target", required=True, metavar=metavar)
    for action in existing._actions:  # argparse keeps subparsers only there
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"`milo {name}` exists without subcommands")


def add_client_options(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    """The options every `milo eval` target shares: --timeout, --api-key, --json."""
    parser.add_argument("--timeout", type=float, default=300.0, help=timeout_help)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MILO_API_KEY"),
        help="API key if the service needs one (default: $MILO_API_KEY)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def eval_group(subparsers: Any) -> Any:
    """`milo eval`'s subparsers: each component adds its own target (stt, mt, tts)."""
    return command_group(subparsers, "eval", "evaluate a running service")
