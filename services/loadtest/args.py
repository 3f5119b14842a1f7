"""The flags of `milo loadtest`, their bounds, and the run configuration built from them.

Imported when the `milo` command line is built: no gRPC or target import happens here until
`build_config` runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from services.runtime.config import PORTS

if TYPE_CHECKING:
    from services.loadtest.app import Config
    from services.loadtest.target import TargetOptions

TARGET_NAMES = ("stt", "translate", "llm", "tts", "gateway", "conversation")


def bounded(kind: type, low: float, high: float) -> Callable[[str], float | int]:
    """An argparse type: `kind(text)` within [low, high]."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value  # type: ignore[no-any-return]

    return parse


def _load(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load shape")
    how = g.add_mutually_exclusive_group()
    how.add_argument(
        "-c",
        "--concurrency",
        type=bounded(int, 1, 1024),
        default=1,
        help="closed loop: requests in flight at once (default: %(default)s)",
    )
    how.add_argument(
        "-r",
        "--rate",
        type=bounded(float, 0.01, 10_000),
        help="open loop: requests started per second, whether or not earlier "
        "ones have finished, so that queueing shows",
    )
    g.add_argument(
        "--arrivals",
        choices=("poisson", "uniform"),
        default="poisson",
        help="open loop: random (Poisson) or evenly spaced arrivals",
    )
    much = g.add_mutually_exclusive_group()
    much.add_argument(
        "-d",
        "--duration",
        type=bounded(float, 0.1, 86_400),
        help="seconds of measured load (default: 10, unless --requests)",
    )
    much.add_argument(
        "-n",
        "--requests",
        type=bounded(int, 1, 10_000_000),
        help="measured requests to send instead of a duration",
    )
    g.add_argument(
        "--warmup",
        type=bounded(float, 0, 3600),
        default=1.0,
        help="seconds at the start whose requests are sent but not counted (default: %(default)s)",
    )
    g.add_argument(
        "--timeout",
        type=bounded(float, 0.1, 3600),
        default=30.0,
        help="deadline of each request, in seconds (default: %(default)s)",
    )
    g.add_argument(
        "--busy-pause-max",
        type=bounded(float, 0, 60),
        default=2.0,
        metavar="S",
        help="closed loop: after RESOURCE_EXHAUSTED a worker waits the server's "
        "retry hint, at most this long; 0 retries at once (default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals")


def _caps(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("caps (always apply, warm-up and ramp included)")
    g.add_argument(
        "--max-requests",
        type=bounded(int, 1, 10_000_000),
        default=10_000,
        help="requests sent at most (default: %(default)s)",
    )
    g.add_argument(
        "--max-duration",
        type=bounded(float, 1, 86_400),
        default=600.0,
        help="seconds at most; calls still in flight then are cancelled (default: %(default)s)",
    )
    g.add_argument(
        "--max-in-flight",
        type=bounded(int, 1, 10_000),
        default=256,
        help="open loop: arrivals past this many in flight are skipped and "
        "counted (default: %(default)s)",
    )


def _ramp(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ramp: the highest open-loop rate meeting a latency objective")
    g.add_argument("--ramp", action="store_true", help="search for the rate (needs --slo)")
    g.add_argument(
        "--slo",
        help="objective, e.g. p95<500ms, p99<2s, first.p90<300ms (first: time to first result)",
    )
    g.add_argument(
        "--ramp-start",
        type=bounded(float, 0.01, 10_000),
        default=1.0,
        help="first rate, req/s (default: %(default)s)",
    )
    g.add_argument(
        "--ramp-factor",
        type=bounded(float, 1.05, 10),
        default=2.0,
        help="rate multiplier between steps (default: %(default)s)",
    )
    g.add_argument(
        "--ramp-max-rate",
        type=bounded(float, 0.01, 10_000),
        default=1000.0,
        help="highest rate tried (default: %(default)s)",
    )
    g.add_argument(
        "--step-duration",
        type=bounded(float, 0.5, 3600),
        default=10.0,
        help="seconds per step (default: %(default)s)",
    )
    g.add_argument(
        "--refine",
        type=bounded(int, 0, 10),
        default=2,
        help="bisection steps after the first miss (default: %(default)s)",
    )
    g.add_argument(
        "--max-error-rate",
        type=bounded(float, 0, 1),
        default=0.01,
        help="a step with more failed requests misses (default: %(default)s)",
    )


def _payloads(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("payloads (default: built-in, per target)")
    g.add_argument(
        "--payload",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="your own payloads, repeatable: .jsonl or text lines; for stt and "
        "the gateway, .wav files or folders (text lines are spoken by espeak-ng)",
    )
    g.add_argument("--language", help="stt/gateway: spoken language (default: the server's)")
    g.add_argument("--source-language", default="mg", help="translate: text lines from")
    g.add_argument("--target-language", default="fr", help="translate: text lines to")
    g.add_argument("--max-tokens", type=bounded(int, 1, 100_000), help="llm/gateway: tokens")
    g.add_argument("--voice", help="tts/gateway: voice (default: the server's)")
    g.add_argument(
        "--audio-pace",
        type=bounded(float, 0, 100),
        default=1.0,
        help="speech sent at this many times real time; 0: as fast as possible",
    )
    g.add_argument(
        "--chunk-ms",
        type=bounded(int, 10, 2000),
        default=100,
        help="audio per message (default: %(default)s)",
    )
    g.add_argument(
        "--tail-silence-ms",
        type=bounded(int, 0, 10_000),
        default=800,
        help="silence sent after the speech, so that the VAD ends the utterance",
    )
    g.add_argument(
        "--speech-rate-hz",
        type=bounded(int, 8000, 48_000),
        default=16_000,
        help="speech resampled to this rate before sending (default: %(default)s)",
    )
    g.add_argument("--unary", action="store_true", help="stt: Recognize, not streaming")
    g.add_argument(
        "--text-input", action="store_true", help="gateway: typed text turns instead of speech"
    )
    g.add_argument("--text-output", action="store_true", help="gateway: no speech synthesis")


def _output(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument(
        "--json",
        metavar="FILE",
        help="write the report as JSON ('-': stdout, and the table goes to stderr)",
    )
    g.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.json",
        help="print the change from an earlier --json report",
    )
    g.add_argument(
        "--progress-interval",
        type=bounded(float, 0.1, 3600),
        default=5.0,
        help="seconds between progress lines when stderr is not a terminal",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    g.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="local server process whose CPU use to report (from /proc); "
        "repeatable, the sum is reported",
    )
    g.add_argument(
        "--api-key", help="sent as 'authorization: Bearer' (default: $MILO_LOADTEST_API_KEY)"
    )


def _conversation(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "conversation: simulated people talking to the gateway, turn after turn (uses "
        "--slo 'first_audio.p95<1500ms', --timeout per turn, --seed, --text-input, --json)"
    )
    g.add_argument(
        "--clients",
        default="1,2,4,8",
        metavar="N,N,...",
        help="levels: people talking at once (default: %(default)s)",
    )
    g.add_argument(
        "--turns",
        type=bounded(int, 1, 1000),
        default=3,
        help="turns per person per level (default: %(default)s)",
    )
    g.add_argument(
        "--think-time",
        type=bounded(float, 0, 600),
        default=2.0,
        metavar="S",
        help="mean pause between a reply's end and the next utterance; each "
        "pause is drawn from 0.5x to 1.5x of it (default: %(default)s)",
    )
    g.add_argument(
        "--player-buffer-ms",
        type=bounded(float, 0, 10_000),
        default=100.0,
        help="the simulated player's jitter buffer: playback starts this long "
        "after the first audio (default: %(default)s)",
    )
    g.add_argument(
        "--warmup-turns",
        type=bounded(int, 0, 100),
        default=1,
        help="turns of one person before the levels, not counted",
    )


def add_arguments(p: argparse.ArgumentParser, address: Callable[[str], str]) -> None:
    """Add `milo loadtest`'s arguments to `p`; `address` parses and checks --address."""
    p.add_argument("target", choices=TARGET_NAMES, help="what to load-test")
    p.add_argument(
        "-a",
        "--address",
        type=address,
        help="host:port of the server, the only address contacted (default: "
        "127.0.0.1 and the target's default port: "
        + ", ".join(f"{n} {PORTS[n][0]}" for n in TARGET_NAMES[:-1])
        + ", conversation: the gateway's)",
    )
    for group in (_load, _caps, _ramp, _payloads, _conversation, _output):
        group(p)


def target_options(args: argparse.Namespace, env: Mapping[str, str]) -> TargetOptions:
    """The request settings from the flags (and the API key from the environment)."""
    from services.loadtest.target import TargetOptions

    key = args.api_key or env.get("MILO_LOADTEST_API_KEY")
    return TargetOptions(
        language=args.language,
        source=args.source_language,
        target=args.target_language,
        max_tokens=args.max_tokens,
        voice=args.voice,
        audio_pace=args.audio_pace,
        chunk_ms=args.chunk_ms,
        tail_silence_ms=args.tail_silence_ms,
        speech_rate_hz=args.speech_rate_hz,
        unary=args.unary,
        text_input=args.text_input,
        text_output=args.text_output,
        payload_files=tuple(args.payload),
        metadata=(("authorization", f"Bearer {key}"),) if key else (),
    )


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """The run configuration; ValueError for flags that do not go together."""
    from services.loadtest.app import Config
    from services.loadtest.ramp import RampPlan, parse_slo
    from services.loadtest.runner import Limits, Shape

    if args.ramp and not args.slo:
        raise ValueError("--ramp needs a latency objective, e.g. --slo 'p95<500ms'")
    if args.ramp and args.requests is not None:
        raise ValueError("--ramp runs steps of --step-duration seconds: drop --requests")
    for path in args.payload:
        if not path.exists():
            raise ValueError(f"--payload {path}: no such file or folder")
    shape = Shape(
        concurrency=args.concurrency,
        rate=args.rate,
        arrivals=args.arrivals,
        duration_s=None if args.requests is not None else (args.duration or 10.0),
        requests=args.requests,
        warmup_s=args.warmup,
        timeout_s=args.timeout,
        seed=args.seed,
        busy_pause_max_s=args.busy_pause_max,
    )
    options = target_options(args, env)
    ramp = None
    if args.ramp:
        ramp = RampPlan(
            parse_slo(args.slo),
            args.ramp_start,
            args.ramp_factor,
            args.ramp_max_rate,
            args.refine,
            args.max_error_rate,
        )
    address = args.address or f"127.0.0.1:{PORTS[args.target][0]}"
    return Config(
        args.target,
        address,
        shape,
        Limits(args.max_requests, args.max_duration, args.max_in_flight),
        options,
        ramp,
        args.step_duration,
        tuple(args.server_pid),
    )
