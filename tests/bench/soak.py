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
  that milo up reported. RSS is also read every RSS_EVERY_S seconds, and each of these
  points gives the median of the readings in the minute before it too: a process's RSS
  swings within seconds while a request is served (TTS: a padded batch's tensors, up to
  +150 MiB, are allocated, freed and trimmed again within 2 s), so one reading can land
  on a batch in flight; the growth verdict uses the minute medians;
- inside the stack, per window, the p95 bucket of the services' own histograms (the
  gateway's stage latencies, translate's and TTS's batch wait and model-call time), to tell
  a slow model call from a request that waited;
- a verdict per goal, ready to paste: errors other than deliberate ones by code (with the
  first message of each), p95 per window and last/first per kind, RSS and fds per process
  at start / after window 1 / end with the growth after window 1, milo up restarts; and
  the load average.

Goals (issue 20): 0 errors other than deliberate ones, p95 of the last window within 20 % of
the first, RSS growth under 5 % per process after the first window. Not in CI. Figures
depend on the machine's other load: say the load average beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from milo.audio.v1 import audio_pb2  # noqa: E402
from milo.client import MiloClient  # noqa: E402
from milo.gateway.v1 import gateway_pb2 as gw  # noqa: E402
from services.runtime.config import PORTS  # noqa: E402

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


RSS_EVERY_S = 5.0  # how often RSS is read for the minute medians
RSS_SPAN_S = 60.0  # the minute before a checkpoint whose readings give its median


async def read_rss(pids: dict[str, int], readings: list[tuple[float, dict[str, float]]]) -> None:
    """Every RSS_EVERY_S, append (monotonic time, {process: RSS MiB}) to `readings`."""
    while True:
        procs = resources(pids)
        readings.append((time.monotonic(), {n: p["rss_mib"] for n, p in procs.items()}))
        await asyncio.sleep(RSS_EVERY_S)


def minute_median(
    readings: list[tuple[float, dict[str, float]]], at: float
) -> dict[str, float | None]:
    """Per process, the median RSS (MiB) of the readings in the RSS_SPAN_S before `at`
    (monotonic); None without readings there."""
    span = [r for t, r in readings if at - RSS_SPAN_S <= t <= at]
    names = {n for r in span for n in r}
    out: dict[str, float | None] = {}
    for name in names:
        values = [r[name] for r in span if r.get(name)]
        out[name] = percentiles(values)["p50"] if values else None
    return out


# Stage latencies inside the stack, from the services' Prometheus histograms: (process,
# histogram, label that names the series). Scraped at each sample; reported per window.
HISTOGRAMS = (
    ("gateway", "milo_gateway_stage_seconds", "stage"),
    ("translate", "milo_translate_batch_wait_seconds", ""),
    ("translate", "milo_translate_batch_duration_seconds", ""),
    ("tts", "milo_tts_queue_wait_seconds", ""),
    ("tts", "milo_tts_batch_seconds", ""),
)


def scrape(base_port: int) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts {series: {upper bound s: count}} of HISTOGRAMS; a process
    that does not answer is left out."""
    out: dict[str, dict[float, float]] = {}
    for name, metric, label in HISTOGRAMS:
        port = base_port + 100 + list(PORTS).index(name)  # as `milo up --base-port`
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            if family.name != metric:
                continue
            for sample in family.samples:
                if sample.name == metric + "_bucket":
                    series = f"{name} {metric.removeprefix('milo_')}"
                    if label:
                        series += f" {sample.labels.get(label, '')}"
                    bound = float(sample.labels["le"])
                    out.setdefault(series, {})[bound] = sample.value
    return out


def window_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The bucket bound under which a share `q` of the window's observations fell, as text
    ("<=0.5s"; ">120s" past the last finite bound), and their count."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return "-"
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            label = f"<={bound:g}s" if math.isfinite(bound) else f">{bounds[-2]:g}s"
            return f"{label} ({total:.0f})"
    return "-"


# ---- the load --------------------------------------------------------------------------------


@dataclass
class Record:
    """What the loops saw: latencies by (window, kind), errors by code, deliberate events."""

    started: float
    window_s: float
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # code -> first message, when
    deliberate: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)

    windows: int = 1  # the turns that end after the last window are counted in it

    def window(self) -> int:
        return min(self.windows - 1, int((time.monotonic() - self.started) // self.window_s))

    def latency(self, kind: str, seconds: float) -> None:
        self.latencies[(self.window(), kind)].append(seconds * 1000)

    def error(self, code: str, message: str = "") -> None:
        self.errors[code] += 1
        if code not in self.examples:
            at = (time.monotonic() - self.started) / 60
            self.examples[code] = f"at {at:.1f} min: {message[:300]}"


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
                    self.record.error(f"grpc {exc.code().name}", exc.details() or "")

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
            self.record.error(f"http {reply.status_code} {kind}", reply.text)


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
            record.error(f"turn {gw.Stage.Name(payload.stage)} {payload.code}", payload.message)
        elif name == "turn_ended":
            reason = gw.TurnEnded.Reason.Name(payload.reason)
            if reason == "REASON_BARGED_IN" and kind == "barge_in":
                record.deliberate["barge-in"] += 1
            elif reason not in ("REASON_COMPLETED", "REASON_ERROR"):
                record.error(f"turn ended {reason} ({kind})")
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


P95_RATIO_GOAL = 1.2  # p95 of the last window over the first
RSS_GROWTH_GOAL = 0.05  # after the first window, per process


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(record: Record, samples: list[dict], up: Up, args: argparse.Namespace) -> dict:
    """Print the figures and a verdict per goal; the same as a dict for the JSON file."""
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

    print(f"\ninside the stack, p95 bucket per {args.window:g}-minute window (count)")
    series = sorted({name for sample in samples for name in sample.get("metrics", {})})
    for name in series:
        cells = [
            window_quantile(
                before.get("metrics", {}).get(name, {}),
                after.get("metrics", {}).get(name, {}),
                0.95,
            )
            for before, after in itertools.pairwise(samples)
        ]
        print(f"  {name:<48} " + " | ".join(cells))

    goals: dict[str, dict] = {}
    lines: list[str] = []
    errors = sum(record.errors.values())
    goals["errors"] = {"value": errors, "goal": 0, "pass": errors == 0}
    lines.append(
        f"errors other than deliberate: {errors} (goal 0) {verdict(errors == 0)}"
        + "".join(f"\n    {n:5d}  {code}" for code, n in record.errors.most_common())
    )
    lines.append(f"deliberate (not errors): {dict(record.deliberate) or 'none'}")
    for code, example in record.examples.items():
        lines.append(f"  first {code}: {example}")

    if len(windows) >= 2:
        first, last = windows[0], windows[-1]
        for k in kinds:
            a, b = table.get(f"{first}:{k}"), table.get(f"{last}:{k}")
            if a is None or b is None:
                continue
            ratio = b["p95"] / a["p95"]
            ok = ratio <= P95_RATIO_GOAL
            goals[f"p95 {k}"] = {
                "p95_ms": [table[f"{w}:{k}"]["p95"] for w in windows if f"{w}:{k}" in table],
                "value": ratio,
                "goal": P95_RATIO_GOAL,
                "pass": ok,
            }
            per = " ".join(
                f"{table[f'{w}:{k}']['p95']:.0f}" if f"{w}:{k}" in table else "-" for w in windows
            )
            lines.append(
                f"p95 {k:<14} per window {per} ms; last/first {ratio:.2f} "
                f"(goal <= {P95_RATIO_GOAL:.2f}) {verdict(ok)}"
            )
    else:
        lines.append("p95 last/first: one window only, no verdict (run longer than --window)")

    start, end = samples[0], samples[-1]
    after_first = samples[1] if len(samples) > 2 else samples[0]
    lines.append(
        "RSS MiB and open fds per process: start / after window 1 / end (one reading each, "
        "then the medians of the minute before window 1's end and the run's end); RSS growth "
        f"after window 1, of those medians (goal < {RSS_GROWTH_GOAL:.0%})"
    )
    for name in start["procs"]:
        a, b, c = (x["procs"].get(name, {}) for x in (start, after_first, end))
        rss = [x.get("rss_mib", 0.0) for x in (a, b, c)]
        medians = [after_first.get("rss_median", {}).get(name), end.get("rss_median", {}).get(name)]
        m1, m2 = medians[0] or rss[1], medians[1] or rss[2]
        growth = (m2 - m1) / m1 if m1 else math.inf
        restarted = len({x.get("pid") for x in (a, b, c)}) > 1
        ok = growth < RSS_GROWTH_GOAL and not restarted
        goals[f"rss {name}"] = {
            "rss_mib": rss,
            "rss_minute_median_mib": medians,
            "fds": [x.get("fds") for x in (a, b, c)],
            "value": growth,
            "goal": RSS_GROWTH_GOAL,
            "pass": ok,
        }
        lines.append(
            f"  {name:<10} RSS {rss[0]:7.1f} / {rss[1]:7.1f} / {rss[2]:7.1f}  medians "
            f"{m1:7.1f} / {m2:7.1f}  growth {growth:+6.1%} {verdict(ok)}"
            f"{' (pid changed: restarted)' if restarted else ''}"
            f"   fds {a.get('fds')} / {b.get('fds')} / {c.get('fds')}"
        )
    supervision = up.supervision()
    goals["crashes"] = {"value": len(supervision), "goal": 0, "pass": not supervision}
    lines.append(
        f"milo up crash/restart lines: {len(supervision)} {verdict(not supervision)}"
        + "".join(f"\n    {line}" for line in supervision)
    )
    passed = all(g["pass"] for g in goals.values())
    load = os.getloadavg()
    print(f"\ncompleted: {dict(record.done)}")
    print(
        f"\n== soak verdict: {args.conversations} conversations, {args.minutes:g} min, "
        f"{args.window:g}-minute windows; load average now {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} =="
    )
    print("\n".join(lines))
    print(f"overall: {verdict(passed)}")
    return {
        "args": {k: str(v) for k, v in vars(args).items()},
        "latency_ms": table,
        "errors": dict(record.errors),
        "error_examples": record.examples,
        "deliberate": dict(record.deliberate),
        "completed": dict(record.done),
        "resources": samples,
        "goals": goals,
        "pass": passed,
        "supervision": supervision,
        "load_average_end": load,
    }


async def soak(args: argparse.Namespace, up: Up, speech: Path) -> dict:
    window_s = args.window * 60
    record = Record(
        time.monotonic(), window_s, windows=max(1, math.ceil(args.minutes / args.window))
    )
    until = record.started + args.minutes * 60
    pids = up.pids()
    samples = [{"at_s": 0.0, "procs": resources(pids), "metrics": scrape(up.base)}]
    readings: list[tuple[float, dict[str, float]]] = []
    reader = asyncio.create_task(read_rss(pids, readings))
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
        procs = resources(up.pids())
        median = minute_median(readings, time.monotonic())
        samples.append(
            {"at_s": at, "procs": procs, "rss_median": median, "metrics": scrape(up.base)}
        )
        rss = " ".join(f"{n} {p['rss_mib']:.0f}" for n, p in procs.items())
        print(
            f"  {at / 60:5.1f} min (load {os.getloadavg()[0]:.1f}): done {dict(record.done)}, "
            f"errors {dict(record.errors) or 'none'}; RSS MiB {rss}",
            flush=True,
        )
    reader.cancel()
    for task in loops:
        if task.exception() is not None:
            record.error(f"client loop {type(task.exception()).__name__}", repr(task.exception()))
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
