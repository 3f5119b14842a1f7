"""`milo models demo|fetch|convert`: registered on the main CLI by `add_commands`.

    milo models demo [--dir D] [--force] [--stt tiny.en|base]
    milo models fetch [--dir D] [--only stt translate ...] [--stt SRC] [--translate SRC] ...
    milo models convert {stt,translate,llm,tts} SOURCE [--dir D] [--quantization Q] [--base B]
    milo models list [--dir D] [--json]

`fetch` takes each source from the hub unless it names a local path; `convert` only takes
a local folder (or a .gguf file), e.g. a fine-tuned `checkpoint-7000/`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.models import convert, fetch
from services.models._util import ModelsError
from services.models.demo import build_demo
from services.models.layout import COMPONENTS, default_demo_dir, default_models_dir

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def add_commands(subparsers: Any) -> None:
    """Register `models` and its subcommands on an argparse subparsers object."""
    models = subparsers.add_parser("models", help="build, fetch and convert Milo's models")
    sub = models.add_subparsers(dest="models_command", metavar="{demo,fetch,convert,list}")
    sub.required = True
    _add_demo(sub)
    _add_fetch(sub)
    _add_convert(sub)
    _add_list(sub)


def _add_demo(sub: Any) -> None:
    parser = sub.add_parser("demo", help="build the small offline demo models")
    help_dir = "target folder (default: $MILO_DEMO_MODELS or ./models/demo)"
    parser.add_argument("--dir", type=Path, default=None, help=help_dir)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--stt",
        choices=("tiny.en", "base"),
        default="tiny.en",
        help="demo Whisper: tiny.en (English only, fast; default) or base (multilingual, "
        "transcribes Malagasy; ~2x slower on a CPU)",
    )
    parser.set_defaults(func=_guarded(_run_demo))


def _add_fetch(sub: Any) -> None:
    parser = sub.add_parser("fetch", help="download the real models and convert them")
    _common(parser)
    parser.add_argument("--only", nargs="+", choices=COMPONENTS, default=list(COMPONENTS))
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--translate", default=fetch.NLLB_REPO, help="NLLB repo or folder")
    parser.add_argument(
        "--mt-quantization", default=convert.DEFAULT_MT_QUANTIZATION, choices=convert.QUANTIZATIONS
    )
    parser.add_argument("--stt", default=fetch.WHISPER_REPO, help="Whisper repo or checkpoint")
    parser.add_argument("--stt-base", default=fetch.WHISPER_REPO, help="tokenizer source")
    parser.add_argument(
        "--stt-quantization",
        default=convert.DEFAULT_STT_QUANTIZATION,
        choices=convert.QUANTIZATIONS,
    )
    parser.add_argument("--llm-repo", default=fetch.LLM_REPO, help="GGUF repo or local file")
    parser.add_argument("--llm-file", default=fetch.LLM_FILENAME, help="GGUF file in the repo")
    parser.add_argument("--tts", default=fetch.MMS_REPO, help="VITS repo or folder")
    parser.add_argument("--tts-base", default=fetch.MMS_REPO, help="tokenizer source")
    parser.set_defaults(func=_guarded(_run_fetch))


def _add_convert(sub: Any) -> None:
    parser = sub.add_parser("convert", help="convert a local model folder into the layout")
    parser.add_argument("component", choices=COMPONENTS)
    parser.add_argument("source", type=Path, help="local folder (a .gguf file for llm)")
    _common(parser)
    parser.add_argument(
        "--quantization", default=None, choices=convert.QUANTIZATIONS, help="CTranslate2 weights"
    )
    parser.add_argument("--base", default=None, help="base model for missing tokenizer files")
    parser.set_defaults(func=_guarded(_run_convert))


def _add_list(sub: Any) -> None:
    parser = sub.add_parser(
        "list", help="each model's id, size, compute type and licence (flags non-commercial)"
    )
    help_dir = "models folder (default: $MILO_MODELS_DIR or ./models)"
    parser.add_argument("--dir", type=Path, default=None, help=help_dir)
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    import json

    from services.models.listing import format_rows, list_models, rows_json

    root = args.dir or default_models_dir()
    rows = list_models(root)
    if args.json:
        print(json.dumps(rows_json(rows), indent=2, ensure_ascii=False))
    else:
        print(f"models in {root}")
        print(format_rows(rows))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    help_dir = "models folder (default: $MILO_MODELS_DIR or ./models)"
    parser.add_argument("--dir", type=Path, default=None, help=help_dir)
    parser.add_argument("--force", action="store_true", help="redo even if up to date")


def _guarded(handler: Handler) -> Handler:
    """Turn expected failures into one clear line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ModelsError as exc:
            print(f"milo models: {exc}", file=sys.stderr)
            return 1

    return run


def _run_demo(args: argparse.Namespace) -> int:
    build_demo(args.dir or default_demo_dir(), force=args.force, stt=args.stt)
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    root = args.dir or default_models_dir()
    hub = fetch.Hub(revision=args.revision)
    steps: dict[str, Callable[[], object]] = {
        "translate": lambda: fetch.prepare_translate(
            root, args.translate, args.mt_quantization, hub=hub, force=args.force
        ),
        "stt": lambda: fetch.prepare_stt(
            root, args.stt, args.stt_quantization, base=args.stt_base, hub=hub, force=args.force
        ),
        "llm": lambda: fetch.prepare_llm(
            root, args.llm_repo, args.llm_file, hub=hub, force=args.force
        ),
        "tts": lambda: fetch.prepare_tts(
            root, args.tts, base=args.tts_base, hub=hub, force=args.force
        ),
    }
    for component in COMPONENTS:
        if component in args.only:
            steps[component]()
    print(f"models ready in {root}", flush=True)
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    source: Path = args.source.expanduser()
    if not source.exists():
        raise ModelsError(f"{source} does not exist (use `milo models fetch` for hub models)")
    if (args.component == "llm") != source.is_file():
        raise ModelsError(f"{source}: llm takes a .gguf file, the others a folder")
    root, name, q = args.dir or default_models_dir(), str(source), args.quantization
    if args.component == "llm":
        fetch.prepare_llm(root, name, force=args.force)
    elif args.component == "translate":
        fetch.prepare_translate(root, name, q or convert.DEFAULT_MT_QUANTIZATION, force=args.force)
    elif args.component == "stt":
        base = args.base or fetch.WHISPER_REPO
        quantization = q or convert.DEFAULT_STT_QUANTIZATION
        fetch.prepare_stt(root, name, quantization, base=base, force=args.force)
    else:
        fetch.prepare_tts(root, name, base=args.base or fetch.MMS_REPO, force=args.force)
    print(f"{args.component} ready in {root}", flush=True)
    return 0
