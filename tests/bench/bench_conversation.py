"""The conversation load test on the demo stack with batching off and on: the largest number
of simultaneous conversations whose first audio meets the objective, before and after
batching, measured side by side in one run.

For each setting a demo stack is started here (every service in its own process, and the
gateway), `milo loadtest conversation` runs against its gateway at each level, and the
stack is stopped. Batching off is the stack before continuous batching and batched
STT/TTS, by settings:

- `MILO_LLM_PARALLEL=1`: one KV-cache sequence, so replies are generated one at a time in
  arrival order (FIFO), each reusing the prompt prefix its predecessor left in the cache;
- `MILO_STT_MAX_BATCH=1`: every final and Recognize decoded alone, urgent ones first;
- `MILO_TTS_MAX_BATCH=1`: one sentence per model call, one call at a time.

Batching on is the shipped defaults. Prints both tables, then per level the first audio
p50/p95 of both, and the largest level meeting `--slo` for each. Reports go to --out.

    python tests/bench/bench_conversation.py                        # 1,2,4,8 clients
    python tests/bench/bench_conversation.py --clients 1,4 --turns 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from stack import DemoStack  # noqa: E402

BATCHING_OFF = {"MILO_LLM_PARALLEL": "1", "MILO_STT_MAX_BATCH": "1", "MILO_TTS_MAX_BATCH": "1"}
SETTINGS = {"batching off": BATCHING_OFF, "batching on": {}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    p.add_argument("--clients", default="1,2,4,8", help="levels, comma-separated")
    p.add_argument("--turns", type=int, default=2, help="turns per person per level")
    p.add_argument("--think-time", type=float, default=1.0, help="mean pause between turns, s")
    p.add_argument("--slo", default="first_audio.p95<1500ms")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline of each turn, s")
    p.add_argument("--out", type=Path, default=Path("/tmp/milo-bench-conversation"))
    return p.parse_args(argv)


def one_setting(name: str, env: dict[str, str], args: argparse.Namespace) -> dict:
    report = args.out / f"{name.replace(' ', '-')}.json"
    stack = DemoStack(args.models, env).start()
    try:
        cmd = [
            sys.executable,
            "-m",
            "services.cli",
            "loadtest",
            "conversation",
            "-a",
            stack.gateway.address,
            "--clients",
            args.clients,
            "--turns",
            str(args.turns),
            "--think-time",
            str(args.think_time),
            "--slo",
            args.slo,
            "--timeout",
            str(args.timeout),
            "--json",
            str(report),
            "-q",
        ]
        start = time.monotonic()
        print(f"--- {name} ({' '.join(f'{k}={v}' for k, v in env.items()) or 'defaults'})")
        subprocess.run(cmd, cwd=ROOT, check=True)
        print(f"({time.monotonic() - start:.0f} s, load average {os.getloadavg()[0]:.2f})\n")
    finally:
        stack.stop()
    return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    docs = {name: one_setting(name, env, args) for name, env in SETTINGS.items()}
    off, on = docs["batching off"], docs["batching on"]
    print(f"first audio from the end of speech, ms (objective {args.slo}):")
    heads = ("off p50", "off p95", "on p50", "on p95")
    print(f"{'clients':>7} " + " ".join(f"{h:>9}" for h in heads) + f" {'p95 on/off':>11}")
    for a, b in zip(off["levels"], on["levels"], strict=True):
        fa, fb = a["first_audio_ms"] or {}, b["first_audio_ms"] or {}
        ratio = fb["p95"] / fa["p95"] if fa and fb and fa["p95"] else float("nan")
        print(
            f"{a['clients']:>7} {fa.get('p50', float('nan')):>9.0f} "
            f"{fa.get('p95', float('nan')):>9.0f} {fb.get('p50', float('nan')):>9.0f} "
            f"{fb.get('p95', float('nan')):>9.0f} {ratio:>10.2f}x"
        )
    for name, doc in docs.items():
        best = doc.get("best_level")
        print(f"largest level meeting the objective, {name}: {best if best else 'none'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
