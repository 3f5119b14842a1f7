"""Scale-out benchmark: two translate and two TTS replicas behind one gateway, against one.

    python tests/bench/bench_scaleout.py [--models models/demo] [--sessions 4] [--turns 4]
                                         [--rounds 2] [--max-tokens 24]

Starts on loopback (free ports): translate x2, TTS x2, the LLM, and two gateways. Gateway A
points at one translate and one TTS replica; gateway B at both of each (a list of addresses:
round_robin over the replicas, gateway/balancing.py). The same load runs through A and
through B, alternating rounds: `--sessions` concurrent conversations of `--turns` text turns
each, audio out (each turn: one translation in, then per reply sentence a translation out
and a synthesis). Prints, measured side by side in one run:
  - turns per second through A and through B, and the ratio B/A. Every process shares this
    machine's CPU, so expect little here; on a cluster each replica has its own GPU.
  - the share of calls each replica served through B (each replica's own
    milo_requests_total). Goal: every share within 10 % of even (0.45-0.55 for two).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.up import Child, stop_all, wait_serving
from milo.client import MiloClient
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from services.models.demo import build_demo

TEXT = "Tell me about the weather on the coast this week."
GOAL = 0.10  # each replica's share within 10 % of even


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(name: str, models: Path, **settings: str) -> Child:
    prefix = f"MILO_{name.upper()}_"
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "MILO_MODELS_DIR": str(models.resolve()),
        "PYTHONUNBUFFERED": "1",
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}PORT": str(port),
        f"{prefix}METRICS_HOST": "127.0.0.1",
        f"{prefix}METRICS_PORT": str(metrics_port),
        f"{prefix}LOG_LEVEL": "WARNING",
    }
    env |= {f"{prefix}{k.upper()}": v for k, v in settings.items()}
    return Child(name, port, metrics_port, env)


def served(replica: Child, method: str) -> float:
    """Calls of `method` this replica has finished (any status), from its /metrics."""
    url = f"http://127.0.0.1:{replica.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "milo_requests_total" and s.labels.get("method") == method
    )


async def conversation(address: str, turns: int, max_tokens: int) -> tuple[int, int]:
    """One session of `turns` text turns, each sent once the previous one ended."""
    ended = asyncio.Event()
    completed = failed = 0
    config = gw.SessionConfig(
        user_language="en",
        pivot_language="fr",
        sampling=llm_pb2.SamplingOptions(max_tokens=max_tokens, temperature=0.0, seed=1),
    )

    async def inputs():
        for _ in range(turns):
            ended.clear()
            yield TEXT
            await ended.wait()

    async with MiloClient(address, timeout=600) as client:
        async for event in client.converse(inputs(), config, timeout=900):
            if event.kind == "turn_ended":
                ok = event.payload.reason == gw.TurnEnded.REASON_COMPLETED
                completed, failed = completed + ok, failed + (not ok)
                ended.set()
    return completed, failed


async def load(address: str, sessions: int, turns: int, max_tokens: int) -> tuple[float, int]:
    """(turns per second, failed turns) for `sessions` concurrent conversations."""
    start = time.perf_counter()
    results = await asyncio.gather(
        *(conversation(address, turns, max_tokens) for _ in range(sessions))
    )
    seconds = time.perf_counter() - start
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


def start(children: list[Child], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    for c in children:
        c.start()
    for c in children:
        wait_serving(c, deadline)


def shares(replicas: list[Child], before: list[float], method: str) -> list[float]:
    counts = [served(r, method) - b for r, b in zip(replicas, before, strict=True)]
    total = sum(counts) or 1.0
    return [c / total for c in counts]


async def bench(args: argparse.Namespace) -> int:
    translate = [child("translate", args.models) for _ in range(2)]
    tts = [child("tts", args.models) for _ in range(2)]
    llm = child("llm", args.models)
    services = [*translate, *tts, llm]
    common = {
        "stt_address": "127.0.0.1:1",
        "llm_address": f"127.0.0.1:{llm.port}",
        "http_enabled": "false",
        "translate_timeout_s": "120",
        "tts_timeout_s": "120",
    }
    one = child(
        "gateway",
        args.models,
        **common,
        translate_address=f"127.0.0.1:{translate[0].port}",
        tts_address=f"127.0.0.1:{tts[0].port}",
    )
    two = child(
        "gateway",
        args.models,
        **common,
        translate_address=",".join(f"127.0.0.1:{r.port}" for r in translate),
        tts_address=",".join(f"127.0.0.1:{r.port}" for r in tts),
    )
    children = [*services, one, two]
    try:
        start(children)
        print(
            f"{len(children)} processes SERVING; {args.sessions} sessions x {args.turns} "
            f"turns per round, {args.rounds} rounds each, on {os.cpu_count()} CPUs",
            flush=True,
        )
        await load(f"127.0.0.1:{two.port}", 1, 1, args.max_tokens)  # warm-up
        rates: dict[str, list[float]] = {"one": [], "two": []}
        failures = 0
        t_before, s_before = [0.0, 0.0], [0.0, 0.0]
        t_shares, s_shares = [0.0, 0.0], [0.0, 0.0]
        for _ in range(args.rounds):
            for name, gateway in (("one", one), ("two", two)):
                if name == "two":
                    t_before = [served(r, "Translate") for r in translate]
                    s_before = [served(r, "Synthesize") for r in tts]
                rate, failed = await load(
                    f"127.0.0.1:{gateway.port}", args.sessions, args.turns, args.max_tokens
                )
                rates[name].append(rate)
                failures += failed
                if name == "two":
                    t = shares(translate, t_before, "Translate")
                    s = shares(tts, s_before, "Synthesize")
                    t_shares = [a + b / args.rounds for a, b in zip(t_shares, t, strict=True)]
                    s_shares = [a + b / args.rounds for a, b in zip(s_shares, s, strict=True)]
                print(f"  {name} replica(s) each: {rate:.2f} turns/s", flush=True)
    finally:
        stop_all(children)
    a, b = statistics.median(rates["one"]), statistics.median(rates["two"])
    print(
        f"\nthroughput: 1 translate + 1 TTS {a:.2f} turns/s, 2 + 2 {b:.2f} turns/s: "
        f"ratio {b / a:.2f}x (shared CPU: expect little)"
    )
    ok = True
    for what, values in (("translate", t_shares), ("tts", s_shares)):
        worst = max(abs(v - 0.5) / 0.5 for v in values)
        verdict = "ok" if worst <= GOAL else "MISSED"
        ok &= worst <= GOAL
        print(
            f"{what:>9} calls per replica: {', '.join(f'{v:.1%}' for v in values)} "
            f"(off even by {worst:.1%}; goal <= {GOAL:.0%}: {verdict})"
        )
    print(
        f"failed turns: {failures}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs (other work on the machine skews the throughput ratio)"
    )
    return 0 if ok and not failures else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--sessions", type=int, default=4, help="concurrent conversations")
    parser.add_argument("--turns", type=int, default=4, help="turns per conversation")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per configuration")
    parser.add_argument("--max-tokens", type=int, default=24, help="LLM reply length")
    args = parser.parse_args()
    build_demo(args.models)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
