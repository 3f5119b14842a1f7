"""The longer fuzz run (not in CI): the stack on the demo models, then N fuzzed inputs per
service and the gateway, with random seeds, printing what each answered.

    python tests/fuzz/fuzz_long.py                          # 2000 inputs each, every target
    python tests/fuzz/fuzz_long.py --examples 500 --targets tts,gateway

Per target: inputs sent, statuses seen (counts), faults (UNKNOWN/INTERNAL statuses, internal
class names in a message), whether it is still SERVING, RSS after a warm-up and at the end,
and whether a normal request of every RPC succeeds right after. Exit status 1 on any fault.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "fuzz")]
import fuzzing  # noqa: E402
from procs import ServiceProcess  # noqa: E402
from stack import DemoStack  # noqa: E402

WARM_UP = 50


def fuzz_one(proc: ServiceProcess, name: str, examples: int) -> bool:
    pid = proc.proc.pid  # type: ignore[union-attr]
    start = time.monotonic()
    tally = fuzzing.fuzz_service(proc.address, name, WARM_UP, derandomize=False)
    before = fuzzing.rss_bytes(pid)
    fuzzing.fuzz_service(proc.address, name, examples, derandomize=False, tally=tally)
    after = fuzzing.rss_bytes(pid)
    alive = proc.proc.poll() is None  # type: ignore[union-attr]
    serving = alive and fuzzing.serving(proc.address)
    normal = fuzzing.normal_requests(proc.address, name) if serving else ["not serving"]
    print(
        f"\n{name}: {tally.inputs} inputs in {time.monotonic() - start:.0f}s; statuses "
        f"{dict(tally.statuses.most_common())}"
    )
    print(
        f"  faults: {len(tally.faults)}; alive {alive}; SERVING {serving}; normal requests "
        f"{normal or 'ok'}; RSS {before / 2**20:.1f} -> "
        f"{after / 2**20:.1f} MiB ({(after - before) / before:+.1%})",
        flush=True,
    )
    for fault in tally.faults[:15]:
        print(f"    {fault}")
    return not tally.faults and serving and not normal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=2000, help="inputs per target")
    p.add_argument("--targets", default="stt,translate,llm,tts,gateway")
    p.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    args = p.parse_args(argv)
    stack = DemoStack(args.models)
    try:
        results = [fuzz_one(stack.service(t), t, args.examples) for t in args.targets.split(",")]
    finally:
        stack.stop()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
