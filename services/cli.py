"""`milo`: the one command-line entry point.

    milo serve stt|translate|llm|tts [--port N ...]   run one service (flags = env settings)
    milo models demo|fetch|convert                     prepare models
    milo up                                            the whole stack as local processes
    milo converse | eval | loadtest                    talk to a running stack
    milo doctor                                        check models, GPU, ports first
    milo train stt [export]                            fine-tune Whisper, put it in service

Each component registers its own commands; heavy imports happen only when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module whose main(argv) -> int runs the service
SERVICES = {
    "stt": "services.stt.__main__",
    "translate": "services.translate.__main__",
    "llm": "services.llm.__main__",
    "tts": "services.tts.__main__",
    "gateway": "gateway.__main__",
}

# modules with add_commands(subparsers), each adding its own top-level commands
COMMAND_MODULES = (
    "services.models.cli",
    "services.stt.cli",
    "services.translate.cli",
    "services.tts.cli",
    "gateway.cli",
    "services.loadtest.cli",
    "services.doctor.cli",
    "services.train.cli",
)


def _serve(args: argparse.Namespace) -> int:
    module = importlib.import_module(SERVICES[args.service])
    return int(module.main(args.rest, prog=f"milo serve {args.service}"))


def build_parser() -> argparse.ArgumentParser:
    """The `milo` argument parser: `serve SERVICE ...` plus the commands of every component
    module that is installed (a missing one is skipped, not an error)."""
    parser = argparse.ArgumentParser(
        prog="milo", description="Milo, a voice assistant for Malagasy"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run one service", add_help=False)
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("rest", nargs=argparse.REMAINDER, help="the service's own flags (--help)")
    serve.set_defaults(func=_serve)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # component not built yet / not installed in this image
            raise
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `milo` with `argv` (default: sys.argv); returns the exit code, 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
