"""`milo eval tts --sentences FILE [--tts HOST:PORT] [--stt HOST:PORT] [--json]`: the voice's
intelligibility by round trip through STT (see services/tts/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from services.runtime.commands import add_client_options, eval_group
from services.runtime.config import PORTS

RATE = 16_000  # what the STT service takes natively: no resampling on its side


def add_commands(subparsers: Any) -> None:
    """Register `milo eval tts`."""
    tts = eval_group(subparsers).add_parser(
        "tts",
        help="intelligibility of a voice: TTS -> STT round trip, WER/CER",
        description="Synthesize each sentence with a running TTS service, transcribe the "
        "audio with a running STT service, and print WER/CER against the sentence as the "
        "voice reads it (numbers as words), per sentence and overall.",
    )
    tts.add_argument(
        "--sentences", type=Path, required=True, help="text (a sentence a line) or JSONL ({text})"
    )
    tts.add_argument("--tts", default=f"127.0.0.1:{PORTS['tts'][0]}", help="TTS HOST:PORT")
    tts.add_argument("--stt", default=f"127.0.0.1:{PORTS['stt'][0]}", help="STT HOST:PORT")
    tts.add_argument("--language", default="mg", help="language STT transcribes in (default mg)")
    tts.add_argument("--voice", help="voice (default: the server's)")
    tts.add_argument("--seed", type=int, default=0, help="synthesis seed (same audio each run)")
    add_client_options(tts, "seconds per sentence")
    tts.set_defaults(func=run_eval_tts)


def run_eval_tts(args: argparse.Namespace) -> int:
    """`milo eval tts`: synthesize each sentence, transcribe it with the STT service and score
    the transcripts; returns 0, 1 if a service failed, 2 if the sentence file is unusable."""
    import grpc

    from services.stt.evaluate import ManifestError, format_report, report_json
    from services.tts.evaluate import read_sentences, score_round_trip

    try:
        sentences = read_sentences(args.sentences)
    except ManifestError as exc:
        print(f"milo eval tts: {exc}", file=sys.stderr)
        return 2
    try:
        transcripts, audio_s, model = _round_trips(args, sentences)
    except grpc.RpcError as exc:
        print(
            f"milo eval tts: a service answered {exc.code().name}: {exc.details()}", file=sys.stderr
        )
        return 1
    report = score_round_trip(
        sentences, transcripts, audio_s, model.pop("seconds"), worst=len(sentences)
    )
    if args.json:
        print(json.dumps(report_json(report, model), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, model).replace("milo eval stt:", "milo eval tts:", 1))
    return 0


def _round_trips(
    args: argparse.Namespace, sentences: list[str]
) -> tuple[list[str], float, dict[str, Any]]:
    import grpc

    from milo.audio.v1 import audio_pb2
    from milo.stt.v1 import stt_pb2, stt_pb2_grpc
    from milo.tts.v1 import tts_pb2, tts_pb2_grpc

    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    pcm = audio_pb2.AudioFormat(
        encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE, channels=1
    )
    with (
        grpc.insecure_channel(args.tts) as tts_channel,
        grpc.insecure_channel(args.stt) as stt_channel,
    ):
        tts = tts_pb2_grpc.TtsStub(tts_channel)
        stt = stt_pb2_grpc.SttStub(stt_channel)
        info = tts.Describe(
            tts_pb2.DescribeRequest(), metadata=metadata, timeout=args.timeout, wait_for_ready=True
        )
        transcripts, audio_s, started = [], 0.0, time.monotonic()
        for sentence in sentences:
            request = tts_pb2.SynthesizeRequest(
                text=sentence,
                sample_rate_hz=RATE,
                seed=args.seed,
                encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
            )
            if args.voice:
                request.voice = args.voice
            audio = b"".join(
                m.audio.data
                for m in tts.Synthesize(request, metadata=metadata, timeout=args.timeout)
                if m.HasField("audio")
            )
            audio_s += len(audio) / 2 / RATE
            reply = stt.Recognize(
                stt_pb2.RecognizeRequest(
                    config=stt_pb2.RecognitionConfig(language=args.language),
                    format=pcm,
                    audio=audio,
                ),
                metadata=metadata,
                timeout=args.timeout,
            )
            transcripts.append(reply.text)
    model = {
        "model_id": info.model_id,
        "language": args.language,
        "stt": args.stt,
        "tts": args.tts,
        "seconds": time.monotonic() - started,
    }
    return transcripts, audio_s, model
