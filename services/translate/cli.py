"""`milo eval mt --pairs FILE | --flores [--address HOST:PORT] [--json]`: chrF++ and BLEU of a
running translate service, both ways (see services/translate/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.runtime.commands import add_client_options, eval_group
from services.runtime.config import PORTS


def add_commands(subparsers: Any) -> None:
    """Register `milo eval mt`."""
    mt = eval_group(subparsers).add_parser(
        "mt",
        help="chrF++ and BLEU of a running translate service, mg->fr and fr->mg",
        description="Translate a parallel set both ways with a running translate service and "
        "print corpus BLEU and chrF++ (sacrebleu), runaway outputs and dropped sentences.",
    )
    source = mt.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", type=Path, help="TSV (mg<TAB>fr) or JSONL ({mg, fr})")
    source.add_argument(
        "--flores",
        action="store_true",
        help="FLORES-200 devtest plt_Latn/fra_Latn from the local HF cache",
    )
    mt.add_argument("--address", default=f"127.0.0.1:{PORTS['translate'][0]}", help="HOST:PORT")
    mt.add_argument("--beam-size", type=int, help="beam size (default: the server's)")
    mt.add_argument("--batch", type=int, default=16, help="sentences per request")
    add_client_options(mt, "seconds per request")
    mt.set_defaults(func=run_eval_mt)


def run_eval_mt(args: argparse.Namespace) -> int:
    """`milo eval mt`: translate the parallel set both ways through the service at `--address`
    and print the scores; returns 0, 1 if the service failed, 2 if the set is unusable."""
    import grpc

    from services.translate.evaluate import (
        PairsError,
        evaluate,
        format_scores,
        read_flores,
        read_pairs,
        scores_json,
    )

    try:
        pairs = read_flores() if args.flores else read_pairs(args.pairs)
    except PairsError as exc:
        print(f"milo eval mt: {exc}", file=sys.stderr)
        return 2
    try:
        with grpc.insecure_channel(args.address) as channel:
            client = _Client(channel, args)
            scores = evaluate(pairs, client.translate)
            model = {"model_id": client.model_id, "address": args.address}
    except grpc.RpcError as exc:
        print(
            f"milo eval mt: the service at {args.address} answered {exc.code().name}: "
            f"{exc.details()}",
            file=sys.stderr,
        )
        return 1
    print(
        json.dumps(scores_json(scores, model), ensure_ascii=False, indent=2)
        if args.json
        else format_scores(scores, model)
    )
    return 0


class _Client:
    """Translate in batches; a refused batch is retried sentence by sentence so that one
    sentence the service refuses (INVALID_ARGUMENT) is dropped alone."""

    def __init__(self, channel: Any, args: argparse.Namespace) -> None:
        from milo.translate.v1 import translate_pb2, translate_pb2_grpc

        self._pb = translate_pb2
        self._stub = translate_pb2_grpc.TranslatorStub(channel)
        self._args = args
        self._metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
        info = self._stub.Describe(
            translate_pb2.DescribeRequest(),
            metadata=self._metadata,
            timeout=args.timeout,
            wait_for_ready=True,
        )
        self.model_id = info.model_id
        self._batch = max(1, min(args.batch, info.max_batch_texts or args.batch))

    def translate(self, texts: list[str], source: str, target: str) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(texts), self._batch):
            out += self._batch_or_each(texts[start : start + self._batch], source, target)
        return out

    def _batch_or_each(self, texts: list[str], source: str, target: str) -> list[Any]:
        import grpc

        try:
            return self._call(texts, source, target)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or len(texts) == 1:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    from services.translate.evaluate import Outcome

                    return [Outcome("", dropped=True)]
                raise
        return [item for text in texts for item in self._batch_or_each([text], source, target)]

    def _call(self, texts: list[str], source: str, target: str) -> list[Any]:
        from services.translate.evaluate import Outcome

        request = self._pb.TranslateRequest(
            texts=texts, source_language=source, target_language=target
        )
        if self._args.beam_size is not None:
            request.beam_size = self._args.beam_size
        reply = self._stub.Translate(request, metadata=self._metadata, timeout=self._args.timeout)
        return [
            Outcome(t.text, t.truncated, dropped=bool(s.strip()) and not t.text.strip())
            for s, t in zip(texts, reply.translations, strict=True)
        ]
