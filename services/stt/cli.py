"""`milo eval stt --manifest FILE [--address HOST:PORT] [--json]`: the formal WER/CER
evaluation of a running STT service (see services/stt/evaluate.py for the manifest)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from services.runtime.commands import add_client_options, eval_group
from services.runtime.config import PORTS


def add_commands(subparsers: Any) -> None:
    """Register `milo eval stt`."""
    stt = eval_group(subparsers).add_parser(
        "stt",
        help="WER/CER of a running STT service on a JSONL manifest",
        description="Send each clip of a manifest to a running STT service (Recognize) and "
        "print corpus WER and CER after normalization, and the worst utterances.",
    )
    stt.add_argument("--manifest", required=True, help='JSONL: {"audio": PATH, "text": REF}')
    stt.add_argument("--address", default=f"127.0.0.1:{PORTS['stt'][0]}", help="HOST:PORT")
    stt.add_argument("--language", help="ISO 639-1 code (default: the server's)")
    stt.add_argument("--beam-size", type=int, help="beam size (default: the server's)")
    stt.add_argument("--worst", type=int, default=10, help="worst utterances to list")
    add_client_options(stt, "seconds per clip")
    stt.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """`milo eval stt`: recognize each clip of the manifest with the service at `--address` and
    print WER and CER; returns 0, 1 if the service failed, 2 if the manifest is unusable."""
    from pathlib import Path

    import grpc

    from services.stt.evaluate import ManifestError, format_report, read_manifest, report_json

    try:
        items = read_manifest(Path(args.manifest))
    except ManifestError as exc:
        print(f"milo eval stt: {exc}", file=sys.stderr)
        return 2
    try:
        report, model = _evaluate(args, items)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        print(
            f"milo eval stt: the service at {args.address} answered {code}: {detail}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(report_json(report, model), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, model))
    return 0


def _evaluate(args: argparse.Namespace, items: list[Any]) -> tuple[Any, dict[str, Any]]:
    import grpc

    from milo.stt.v1 import stt_pb2, stt_pb2_grpc
    from services.stt.evaluate import score

    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    config = stt_pb2.RecognitionConfig()
    if args.language:
        config.language = args.language
    if args.beam_size is not None:
        config.beam_size = args.beam_size
    with grpc.insecure_channel(
        args.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = stt_pb2_grpc.SttStub(channel)
        info = stub.Describe(
            stt_pb2.DescribeRequest(), metadata=metadata, timeout=args.timeout, wait_for_ready=True
        )
        hyps, audio_s, processing_s, started = [], 0.0, 0.0, time.monotonic()
        for item in items:
            request = stt_pb2.RecognizeRequest(config=config, audio=item.audio.read_bytes())
            reply = stub.Recognize(request, metadata=metadata, timeout=args.timeout)
            hyps.append(reply.text)
            audio_s += reply.audio_duration_ms / 1000
            processing_s += reply.processing_ms / 1000
    model = {
        "model_id": info.model_id,
        "language": args.language or info.default_language,
        "address": args.address,
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    return score(items, hyps, audio_s, processing_s, args.worst), model
