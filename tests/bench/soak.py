"""Soak: the demo stack under `milo up`, steady mixed load for a chosen time, and what it did.

    python tests/bench/soak.py                       # 30 minutes, 4 concurrent conversations
    python tests/bench/soak.py --minutes 6 --window 2 --conversations 2

Starts `milo up` on the demo models (its own ports: --base-port), then runs
--conversations client loops at once until the time is up. Each loop keeps one Converse
session open for a few turns, then opens a new one, and goes round a fixed mix: a speech
turn (espeak-ng audio at real-time pace), a text turn, a barge-in (a text turn cut at its
first audio, then the next turn), and the OpenAI-compatible HTTP routes (chat completion,
speech). Prints, and writes as JSON (--out):

- errors by code: gRPC statuses, in-band turn errors (stage/code), HTTP statuses; a barge-in
  is deliberate and is not an error;
- latency percentiles (p50/p95/max, ms) per window (--window minutes) and kind: for turns the
  time from the end of the input (text sent, or the end of speech) to the first audio out,
  for HTTP the whole request;
- resident memory (RSS) and open file descriptors of every process (milo up and its five
  children) at the start, at the end of each window, and at the end; crashes and restarts
  that milo up reported.

Goals (issue 20): 0 errors other than deliberate ones, p95 of the last window within 20 % of
the first, RSS growth under 5 % per process after the first window. Not in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from milo.audio.v1 import audio_pb2  # noqa: E402
from milo.client import MiloClient  # noqa: E402
from milo.gateway.v1 import gateway_pb2 as gw  # noqa: E402

NAMES = ("stt", "translate", "llm", "tts", "gateway")
MIX = ("speech", "text", "barge_in", "openai_chat", "text", "openai_speech")
TURNS_PER_SESSION = 6
QUESTIONS = (
    "Hello, how are you today?",
    "What is the weather like in the capital?",
    "Tell me about the sea.",
    "Where can I buy rice?",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    p.add_argument("--window", type=float, default=5.0, help="minutes per reported window")
    p.add_argument("--conversations", type=int, default=4, help="concurrent client loops")
    p.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    p.add_argument(
        "--base-port",
        type=int,
        default=58100,
        help="milo up's ports: BASE..BASE+4, metrics +100, HTTP BASE+5",
    )
    p.add_argument("--max-tokens", type=int, default=48, help="LLM reply length of a turn")
    p.add_argument("--out", type=Path, default=Path("/tmp/milo-soak.json"))
    return p.parse_args(argv)


# ---- the stack -------------------------------------------------------------------------------


class Up:
    """`milo up` in a child process, its log in a file."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = args.base_port
        self.http = self.base + 5
        self.log = Path(tempfile.mkstemp(prefix="milo-soak-", suffix=".log")[1])
        env = {**os.environ, "MILO_GATEWAY_HTTP_PORT": str(self.http)}
        for name in NAMES:  # every request is logged at INFO: too much for half an hour
            env[f"MILO_{name.upper()}_LOG_LEVEL"] = "WARNING"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "up",
                    "--models",
                    str(args.models),
                    "--base-port",
                    str(self.base),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_up(self, within: float = 600) -> None:
        deadline = time.monotonic() + within
        while "Milo is up" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milo up did not come up:\n{self.text()[-3000:]}")
            time.sleep(0.5)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """milo up and each child, by name (children found by their command line)."""
        found = {"milo-up": self.proc.pid}
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        modules = {
            "services.stt": "stt",
            "services.translate": "translate",
            "services.llm": "llm",
            "services.tts": "tts",
            "gateway": "gateway",
        }
        for pid in map(int, out.split()):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            module = argv[argv.index(b"-m") + 1].decode() if b"-m" in argv else ""
            if module in modules:
                found[modules[module]] = pid
        return found

    def supervision(self) -> list[str]:
        return [
            line
            for line in self.text().splitlines()
            if re.search(r"milo up: .*(unexpectedly|restart|giving up)", line)
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def resources(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """RSS (MiB) and open file descriptors of each process, from /proc."""
    out = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            out[name] = {
                "pid": pid,
                "rss_mib": rss / 1024,
                "fds": len(os.listdir(f"/proc/{pid}/fd")),
            }
        except (OSError, StopIteration):
            out[name] = {"pid": pid, "rss_mib": 0.0, "fds": 0}
    return out


# ---- the load --------------------------------------------------------------------------------


@dataclass
class Record:
    """What the loops saw: latencies by (window, kind), errors by code, deliberate events."""

    started: float
    window_s: float
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    deliberate: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)

    windows: int = 1  # the turns that end after the last window are counted in it

    def window(self) -> int:
        return min(self.windows - 1, int((time.monotonic() - self.started) // self.window_s))

    def latency(self, kind: str, seconds: float) -> None:
        self.latencies[(self.window(), kind)].append(seconds * 1000)


class Loop:
    """One client: sessions of a few turns each, going round MIX."""

    def __init__(
        self, index: int, up: Up, speech: Path, record: Record, args: argparse.Namespace
    ) -> None:
        self.index, self.up, self.speech, self.record, self.args = (index, up, speech, record, args)
        self.step = index  # the loops start at different points of the mix

    async def run(self, until: float) -> None:
        async with (
            MiloClient(f"127.0.0.1:{self.up.base}", timeout=120) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.up.http}", timeout=120) as http,
        ):
            while time.monotonic() < until:
                kinds = [MIX[(self.step + i) % len(MIX)] for i in range(TURNS_PER_SESSION)]
                self.step += TURNS_PER_SESSION
                try:
                    await self.session(client, http, kinds)
                except grpc.aio.AioRpcError as exc:
                    self.record.errors[f"grpc {exc.code().name}"] += 1

    async def session(self, client: MiloClient, http: httpx.AsyncClient, kinds: list[str]) -> None:
        inputs: asyncio.Queue[object] = asyncio.Queue()
        plan = [k for k in kinds if not k.startswith("openai")]
        for kind in kinds:
            if kind.startswith("openai"):
                await self.openai(http, kind)
        if not plan:
            return
        config = gw.SessionConfig(input_format=wav_format(self.speech))
        config.sampling.max_tokens = self.args.max_tokens
        conversation = Conversation(self, inputs, plan)
        await conversation.start_next()
        async for event in client.converse(queue_items(inputs), config, timeout=600):
            await conversation.see(event)

    async def openai(self, http: httpx.AsyncClient, kind: str) -> None:
        start = time.monotonic()
        if kind == "openai_chat":
            reply = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "milo",
                    "max_tokens": self.args.max_tokens,
                    "messages": [{"role": "user", "content": QUESTIONS[self.step % 4]}],
                },
            )
        else:
            reply = await http.post(
                "/v1/audio/speech",
                json={"model": "milo", "input": "Salama tompoko.", "voice": "alloy"},
            )
        if reply.status_code == 200:
            self.record.latency(kind, time.monotonic() - start)
            self.record.done[kind] += 1
        else:
            self.record.errors[f"http {reply.status_code} {kind}"] += 1


async def queue_items(queue: asyncio.Queue[object]):  # type: ignore[no-untyped-def]
    while (item := await queue.get()) is not None:
        yield item


class Conversation:
    """Feeds one session's turns and reads its events."""

    def __init__(self, loop: Loop, inputs: asyncio.Queue[object], plan: list[str]) -> None:
        self.loop, self.inputs, self.plan = loop, inputs, plan
        self.kind = ""
        self.sent_at = 0.0  # end of the turn's input: text sent, or the last speech chunk
        self.first_audio = False
        self.feeder: asyncio.Task[None] | None = None

    async def start_next(self) -> None:
        if not self.plan:
            self.inputs.put_nowait(None)
            return
        self.kind, self.first_audio = self.plan.pop(0), False
        question = QUESTIONS[(self.loop.step + len(self.plan)) % len(QUESTIONS)]
        if self.kind == "speech":
            self.feeder = asyncio.create_task(self.speak())
        else:
            self.sent_at = time.monotonic()
            self.inputs.put_nowait(question)

    async def speak(self) -> None:
        """The espeak-ng question at real-time pace, then a second of silence."""
        with wave.open(str(self.loop.speech), "rb") as w:
            rate, data = w.getframerate(), w.readframes(w.getnframes())
        step, start = rate // 50 * 2, time.monotonic()
        for i, offset in enumerate(range(0, len(data), step)):
            self.inputs.put_nowait(data[offset : offset + step])
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
        self.sent_at = time.monotonic()
        silence = b"\x00\x00" * (rate // 50)
        for i in range(50):
            self.inputs.put_nowait(silence)
            await asyncio.sleep(max(0.0, self.sent_at + (i + 1) * 0.02 - time.monotonic()))

    async def see(self, event: object) -> None:
        record, kind = self.loop.record, self.kind
        name, payload = event.kind, event.payload  # type: ignore[attr-defined]
        if name == "audio" and not self.first_audio:
            self.first_audio = True
            record.latency(kind, time.monotonic() - self.sent_at)
            if kind == "barge_in":
                self.inputs.put_nowait(gw.Control.ACTION_BARGE_IN)
        elif name == "error":
            record.errors[f"turn {gw.Stage.Name(payload.stage)} {payload.code}"] += 1
        elif name == "turn_ended":
            reason = gw.TurnEnded.Reason.Name(payload.reason)
            if reason == "REASON_BARGED_IN" and kind == "barge_in":
                record.deliberate["barge-in"] += 1
            elif reason not in ("REASON_COMPLETED", "REASON_ERROR"):
                record.errors[f"turn ended {reason} ({kind})"] += 1
            if reason != "REASON_ERROR":
                record.done[kind] += 1
            if self.feeder is not None:
                await self.feeder  # the trailing silence is sent before the next turn
                self.feeder = None
            await self.start_next()


def wav_format(path: Path) -> audio_pb2.AudioFormat:
    with wave.open(str(path), "rb") as w:
        return audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
            sample_rate_hz=w.getframerate(),
            channels=w.getnchannels(),
        )


# ---- the report ------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": ordered[-1]}


def report(record: Record, samples: list[dict], up: Up, args: argparse.Namespace) -> dict:
    windows = sorted({w for w, _ in record.latencies})
    kinds = sorted({k for _, k in record.latencies})
    table = {
        f"{w}:{k}": percentiles(record.latencies[(w, k)])
        for w in windows
        for k in kinds
        if record.latencies.get((w, k))
    }
    print(f"\nlatency (ms) per {args.window:g}-minute window: p50 / p95 / max (n)")
    for k in kinds:
        cells = [
            f"{table[f'{w}:{k}']['p50']:6.0f} /{table[f'{w}:{k}']['p95']:6.0f} /"
            f"{table[f'{w}:{k}']['max']:6.0f} ({table[f'{w}:{k}']['n']})"
            if f"{w}:{k}" in table
            else "-"
            for w in windows
        ]
        print(f"  {k:<14} " + " | ".join(cells))
    goals = {}
    if len(windows) >= 2:
        first, last = windows[0], windows[-1]
        for k in kinds:
            if f"{first}:{k}" in table and f"{last}:{k}" in table:
                a, b = table[f"{first}:{k}"]["p95"], table[f"{last}:{k}"]["p95"]
                goals[f"p95 {k} last/first"] = b / a
    start, after_first, end = (
        samples[0],
        samples[1] if len(samples) > 2 else samples[0],
        samples[-1],
    )
    print(
        "\nprocess      RSS MiB start -> end of window 1 -> end (growth after window 1)"
        "   fds start -> end"
    )
    for name in start["procs"]:
        a, b, c = (s["procs"].get(name, {}) for s in (start, after_first, end))
        growth = (c.get("rss_mib", 0) - b.get("rss_mib", 0)) / max(b.get("rss_mib", 1), 1e-9)
        goals[f"rss growth {name}"] = growth
        print(
            f"  {name:<10} {a.get('rss_mib', 0):8.1f} -> {b.get('rss_mib', 0):8.1f} -> "
            f"{c.get('rss_mib', 0):8.1f} ({growth:+.1%})      {a.get('fds')} -> {c.get('fds')}"
        )
    print(f"\ncompleted: {dict(record.done)}")
    print(f"deliberate: {dict(record.deliberate)}")
    print(f"errors by code: {dict(record.errors) or 'none'}")
    supervision = up.supervision()
    print(f"milo up crash/restart lines: {supervision or 'none'}")
    print("\ngoals: " + ", ".join(f"{k} = {v:.3f}" for k, v in goals.items()))
    return {
        "args": {k: str(v) for k, v in vars(args).items()},
        "latency_ms": table,
        "errors": dict(record.errors),
        "deliberate": dict(record.deliberate),
        "completed": dict(record.done),
        "resources": samples,
        "goals": goals,
        "supervision": supervision,
    }


async def soak(args: argparse.Namespace, up: Up, speech: Path) -> dict:
    window_s = args.window * 60
    record = Record(
        time.monotonic(), window_s, windows=max(1, math.ceil(args.minutes / args.window))
    )
    until = record.started + args.minutes * 60
    pids = up.pids()
    samples = [{"at_s": 0.0, "procs": resources(pids)}]
    loops = [
        asyncio.create_task(Loop(i, up, speech, record, args).run(until))
        for i in range(args.conversations)
    ]
    print(
        f"soak: {args.conversations} conversations for {args.minutes:g} min; processes {pids}",
        flush=True,
    )
    while not all(t.done() for t in loops):
        await asyncio.wait(loops, timeout=window_s)
        at = time.monotonic() - record.started
        samples.append({"at_s": at, "procs": resources(up.pids())})
        print(
            f"  {at / 60:5.1f} min: done {dict(record.done)}, errors "
            f"{dict(record.errors) or 'none'}",
            flush=True,
        )
    for task in loops:
        if task.exception() is not None:
            record.errors[f"client loop {type(task.exception()).__name__}"] += 1
    return report(record, samples, up, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    speech = Path(tempfile.mkstemp(suffix=".wav")[1])
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(speech), QUESTIONS[1]], check=True)
    up = Up(args)
    try:
        up.wait_up()
        doc = asyncio.run(soak(args, up, speech))
    finally:
        up.stop()
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"\nJSON report: {args.out}; milo up log: {up.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
