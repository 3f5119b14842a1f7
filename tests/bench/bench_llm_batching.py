"""Benchmark the LLM engine's continuous batching: aggregate tokens per second with 8
concurrent streams versus 1, on the same engine (same model, context, threads, sampling).

One LlamaEngine (`parallel` sequences) is loaded once. Each round runs, back to back:

- 1 stream:  `--requests` replies one after the other (a lone request each time);
- N streams: N threads each asking for `--requests` replies back to back (closed loop).

Rounds alternate the two phases, so that changes in the load of a shared machine hit both
alike. Every reply is exactly `--max-tokens` tokens (greedy; the demo and random models
never produce an end-of-sequence token), each stream with its own question after the same
system prompt. Figures:

- aggregate tokens/s: completion tokens of the phase over its wall time; goal N/1 >= 2.5x;
- time to first token (TTFT, from the call to the first text) of every reply: goal p95 at
  N streams <= 3x the median of a lone request;
- tokens/s of each reply at N streams (what one listener gets);
- tokens per CPU second of this process (all its threads): on a shared machine, where the
  wall-clock figures move with the others' load, this ratio is the steadier one.

    python tests/bench/bench_llm_batching.py                      # the demo GGUF
    python tests/bench/bench_llm_batching.py --shape small        # a random llama, ~85M
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "bench")]

from bench_llm import DEFAULT_CACHE, SHAPES, SYSTEM, build_shape_model  # noqa: E402

QUESTIONS = (
    "Bonjour ! Peux-tu me raconter une histoire sur Madagascar ?",
    "Quel temps fait-il à Antananarivo en hiver ?",
    "Comment prépare-t-on le romazava ?",
    "Quels animaux vivent dans la forêt de Ranomafana ?",
    "Où puis-je acheter du riz près du marché ?",
    "À quelle heure part le taxi-brousse pour Toamasina ?",
    "Combien coûte un kilo de tomates aujourd'hui ?",
    "Peux-tu m'apprendre à dire merci en malgache ?",
)


@dataclass
class Reply:
    ttft_s: float
    tokens: int
    decode_tps: float


def one_reply(engine: object, question: str, max_tokens: int) -> Reply:
    from services.llm.domain import ChatMessage, Finish, Role, Sampling

    messages = (ChatMessage(Role.SYSTEM, SYSTEM), ChatMessage(Role.USER, question))
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, seed=1)
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    for event in engine.generate(messages, sampling, threading.Event()):  # type: ignore[attr-defined]
        if isinstance(event, Finish):
            tokens = event.completion_tokens
        else:
            last = time.perf_counter()
            first = first or last
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Reply(first - start, tokens, rate)


def phase(
    engine: object, streams: int, requests: int, max_tokens: int, pool: ThreadPoolExecutor
) -> tuple[float, list[Reply]]:
    """`streams` closed-loop streams of `requests` replies each: (wall s, replies)."""

    def stream(i: int) -> list[Reply]:
        return [
            one_reply(engine, QUESTIONS[(i + k) % len(QUESTIONS)], max_tokens)
            for k in range(requests)
        ]

    start = time.perf_counter()
    replies = [r for rs in pool.map(stream, range(streams)) for r in rs]
    return time.perf_counter() - start, replies


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def report(name: str, wall: float, cpu: float, replies: list[Reply]) -> tuple[float, float]:
    tokens = sum(r.tokens for r in replies)
    tps = tokens / wall
    ttft = [r.ttft_s * 1000 for r in replies]
    each = statistics.median(r.decode_tps for r in replies)
    print(
        f"{name:<11} aggregate {tps:8.1f} tok/s   TTFT p50 {statistics.median(ttft):7.1f} ms"
        f"  p95 {p95(ttft):7.1f} ms   per reply {each:7.1f} tok/s   ({len(replies)} "
        f"replies, {wall:.1f} s, {tokens / cpu:.1f} tokens per CPU s)"
    )
    return tps, tokens / cpu


def main(argv: list[str] | None = None) -> int:
    from services.runtime.config import models_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        type=Path,
        default=models_root() / "llm" / "model.gguf",
        help="GGUF file (default: $MILO_MODELS_DIR/llm/model.gguf, the demo set)",
    )
    p.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        help="a random llama of this shape with "
        "--model's tokenizer (small ~85M, medium ~330M parameters)",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where --shape models go")
    p.add_argument("--streams", type=int, default=8, help="concurrent streams (default 8)")
    p.add_argument("--requests", type=int, default=2, help="replies per stream per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of both phases (default 3)")
    p.add_argument("--max-tokens", type=int, default=96, help="tokens per reply (default 96)")
    p.add_argument("--context", type=int, default=1024, help="context per sequence")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="CPU threads, for one token and for a batch alike (default: all cores)",
    )
    p.add_argument("--prefill-chunk", type=int, default=256, help="prompt tokens per step")
    p.add_argument("--gpu-layers", type=int, default=-1, help="layers on the GPU (-1: all)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from services.llm.llama_engine import LlamaEngine

    model = build_shape_model(args.model, args.shape, args.cache) if args.shape else args.model
    engine = LlamaEngine(
        model,
        args.context,
        args.gpu_layers,
        args.threads,
        parallel=args.streams,
        prefill_chunk=args.prefill_chunk,
    )
    engine.load()
    print(
        f"model {model} ({model.stat().st_size / 1e6:.0f} MB), {args.max_tokens} tokens per "
        f"reply, {args.streams} sequences of {args.context} tokens, threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    lone: list[Reply] = []
    many: list[Reply] = []
    walls, cpus = [0.0, 0.0], [0.0, 0.0]
    with ThreadPoolExecutor(args.streams) as pool:
        phase(engine, args.streams, 1, 8, pool)  # warm-up: every sequence holds the prompt
        for _ in range(args.rounds):
            for i, (streams, out) in enumerate(((1, lone), (args.streams, many))):
                cpu = time.process_time()
                wall, replies = phase(engine, streams, args.requests, args.max_tokens, pool)
                walls[i] += wall
                cpus[i] += time.process_time() - cpu
                out += replies
    engine.close()
    one, one_cpu = report("1 stream", walls[0], cpus[0], lone)
    n, n_cpu = report(f"{args.streams} streams", walls[1], cpus[1], many)
    lone_ttft = statistics.median(r.ttft_s for r in lone)
    ratio_ttft = p95([r.ttft_s for r in many]) / lone_ttft
    print(f"aggregate tokens/s {args.streams} streams / 1 stream: {n / one:.2f}x (goal >= 2.5x)")
    print(f"tokens per CPU second {args.streams} streams / 1 stream: {n_cpu / one_cpu:.2f}x")
    print(f"TTFT p95 at {args.streams} streams / median lone TTFT: {ratio_ttft:.2f}x (goal <= 3x)")
    ratio_p50 = statistics.median(r.ttft_s for r in many) / lone_ttft
    print(
        f"TTFT p50 at {args.streams} streams / median lone TTFT: {ratio_p50:.2f}x (steadier "
        "than the p95 on a busy machine, where the p95 is the stalls of this process)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
