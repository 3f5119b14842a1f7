"""`milo up`: the whole stack as local processes, on the demo models by default.

Starts stt, translate, llm and tts, then the gateway, each as `python -m <module>` with its
settings in the environment; prefixes their logs; waits until every one is SERVING; prints
where they listen. Then it supervises: a child that exits unexpectedly is logged (how it
exited and its last lines) and restarted on the same port with backoff; the gateway reports
that stage unavailable meanwhile and reconnects by itself. After repeated crashes in a short
window (gateway.supervisor.RestartPolicy) `milo up` gives up on that service and says so,
while the others keep serving; giving up on the gateway stops the stack (nothing could be
reached). On Ctrl-C (or SIGTERM) it stops the gateway first, then the services, each
draining within its grace period.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.supervisor import RestartPolicy, exit_reason
from services.runtime.config import PORTS

SERVICES = ("stt", "translate", "llm", "tts")
LAST_LINES = 15  # of a crashed child's output, repeated in the crash report
MODULES = {
    "stt": "services.stt",
    "translate": "services.translate",
    "llm": "services.llm",
    "tts": "services.tts",
    "gateway": "gateway",
}


@dataclass
class Child:
    """One process of the stack: `name` is a key of MODULES, `port` its gRPC and
    `metrics_port` its /metrics port, `env` its whole environment; `tail` keeps its last
    LAST_LINES lines of output for the crash report."""

    name: str
    port: int
    metrics_port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_LINES), repr=False)
    restart_at: float | None = None  # when a crashed child is due to start again
    gave_up: bool = False

    def start(self) -> None:
        """Start `python -m <module>` in its own session, its output relayed to stdout with
        the name as a prefix."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", MODULES[self.name]],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pump = threading.Thread(target=self._relay, daemon=True)
        self.pump.start()

    def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            text = line.decode(errors="replace")
            self.tail.append(text.rstrip("\n"))
            sys.stdout.write(f"{self.name:>9} | {text}")
            sys.stdout.flush()

    def last_lines(self) -> list[str]:
        """Its last lines of output, once the relay has read them all (the child is dead)."""
        if self.pump is not None:
            self.pump.join(timeout=2)
        return list(self.tail)

    def alive(self) -> bool:
        """True while the process is started and has not exited."""
        return self.proc is not None and self.proc.poll() is None


def language_note(models: Path) -> tuple[str | None, str]:
    """The conversation language the demo STT forces, and why (None: no constraint)."""
    try:
        manifest = json.loads((models / "manifest.json").read_text())
    except (OSError, ValueError):
        return None, ""
    languages = manifest.get("stt", {}).get("languages") or []
    if languages == ["en"]:
        return "en", (
            "the STT model is English-only (demo tiny.en): conversations default to "
            "English in, French as the pivot; pass --language to override"
        )
    return None, ""


def plan(models: Path, host: str, language: str | None, base_port: int) -> list[Child]:
    """The five children, not started, the gateway last: each on its default ports
    (services.runtime.config.PORTS), or with `base_port` on BASE+i and metrics at +100;
    the gateway pointed at the four services; `language` (if given) forced on STT and made
    the gateway's default user language."""
    env = {
        **os.environ,
        "MILO_MODELS_DIR": str(models.resolve()),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
    }  # local files only: a missing one fails at once
    # The four model services share this machine's cores. OpenMP threads that spin while
    # idle (CTranslate2's Intel OpenMP in stt and translate, torch's in tts, llama.cpp's)
    # take them from the other services: in a 30-minute soak at 4 conversations on 2 cores,
    # translate calls took up to 30 s and 125 turns failed; with passive waits, none did.
    # An OMP_WAIT_POLICY already set wins (the llm service sets its own the same way).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    children = []
    for name in (*SERVICES, "gateway"):
        grpc_port, metrics_port = PORTS[name]
        if base_port:
            grpc_port = base_port + list(PORTS).index(name)
            metrics_port = grpc_port + 100
        prefix = f"MILO_{name.upper()}_"
        child_env = {
            **env,
            f"{prefix}HOST": host,
            f"{prefix}PORT": str(grpc_port),
            f"{prefix}METRICS_PORT": str(metrics_port),
            # /metrics on the services' own address (by default this machine only), not on
            # every interface; an operator's MILO_<SERVICE>_METRICS_HOST wins
            f"{prefix}METRICS_HOST": env.get(f"{prefix}METRICS_HOST", host),
        }
        children.append(Child(name, grpc_port, metrics_port, child_env))
    gateway = children[-1]
    for child in children[:-1]:
        gateway.env[f"MILO_GATEWAY_{child.name.upper()}_ADDRESS"] = f"127.0.0.1:{child.port}"
    if language:
        children[0].env["MILO_STT_LANGUAGE"] = language
        gateway.env["MILO_GATEWAY_DEFAULT_USER_LANGUAGE"] = language
    return children


def wait_serving(child: Child, deadline: float, stop: threading.Event | None = None) -> None:
    """Poll the child's gRPC health every 0.2 s until it is SERVING. Raises RuntimeError if
    it exits, TimeoutError past `deadline` (time.monotonic(), s), KeyboardInterrupt once
    `stop` is set."""
    with grpc.insecure_channel(f"127.0.0.1:{child.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt  # Ctrl-C while the stack starts
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}")  # type: ignore[union-attr]
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{child.name} was not SERVING in time")


def stop_all(children: list[Child], grace: float = 15.0) -> None:
    """SIGTERM every live child, the gateway first; kill those still running after `grace`
    seconds in all."""
    for child in reversed(children):  # the gateway first, so no new turn starts
        if child.alive():
            child.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    deadline = time.monotonic() + grace
    for child in reversed(children):
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def up(
    models: Path,
    host: str = "127.0.0.1",
    language: str | None = None,
    base_port: int = 0,
    timeout: float = 300.0,
) -> int:
    """`milo up`: run and supervise the stack on `models` until Ctrl-C or SIGTERM, waiting
    at most `timeout` seconds for every process to be SERVING. Returns the exit status:
    0 when stopped, 1 when the gateway was given up on, 2 when there are no models or the
    preflight checks fail. Raises RuntimeError or TimeoutError if the stack does not start."""
    if not (models / "manifest.json").exists():
        print(
            f"no models in {models}: run `milo models demo --dir {models}` first", file=sys.stderr
        )
        return 2
    forced, why = language_note(models)
    if language is None and forced:
        language = forced
        print(f"milo up: {why}")
    if not preflight_ok(models, language, base_port):
        return 2
    children = plan(models, host, language, base_port)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, even where SIGINT was ignored
        signal.signal(sig, lambda *_: stopping.set())
    try:
        return _run(children, timeout, stopping)
    except KeyboardInterrupt:
        return 0
    finally:
        print("milo up: stopping", flush=True)
        stop_all(children)


def preflight_ok(models: Path, language: str | None, base_port: int) -> bool:
    """`milo doctor`'s quick checks (no model load); False, with the same messages, when
    something would fail. Warnings are printed and do not stop the stack."""
    from services.doctor.cli import diagnose
    from services.doctor.report import failed, format_report

    findings = diagnose(
        models, language=language, load=False, base_port=base_port, network=False
    )  # plan() runs the stack in hub offline mode
    problems = failed(findings)
    for finding in findings:
        if finding.level == "warn":
            print(f"milo up: warning: {finding.subject}: {finding.message}", flush=True)
    if problems:
        print(
            f"milo up: not starting, `milo doctor --models {models}` found:\n"
            + format_report(problems),
            file=sys.stderr,
        )
    return not problems


def _run(children: list[Child], timeout: float, stopping: threading.Event) -> int:
    deadline = time.monotonic() + timeout
    for child in children[:-1]:
        child.start()
    for child in children[:-1]:
        wait_serving(child, deadline, stopping)
    children[-1].start()
    wait_serving(children[-1], deadline, stopping)
    _print_table(children)
    while not stopping.wait(0.2):
        for child in children:
            if not supervise(child, time.monotonic(), stopping):
                return 1
    return 0


def supervise(
    child: Child, now: float, stopping: threading.Event, say: Callable[[str], None] | None = None
) -> bool:
    """One look at a child: restart it when due, or handle its unexpected exit. False when
    the stack must stop (the gateway was given up on)."""
    say = say or _say
    if child.gave_up or (child.restart_at is None and child.alive()):
        return True
    if child.restart_at is not None:
        if now >= child.restart_at:
            child.restart_at = None
            child.start()
            say(f"{child.name} restarted (pid {child.proc.pid})")  # type: ignore[union-attr]
            threading.Thread(
                target=_announce_serving, args=(child, stopping, say), daemon=True
            ).start()
        return True
    lines = "\n".join(f"    {line}" for line in child.last_lines()) or "    (no output)"
    say(
        f"{child.name} {exit_reason(child.proc.returncode)} unexpectedly; "  # type: ignore[union-attr]
        f"its last lines:\n{lines}"
    )
    wait = child.policy.on_exit(now)
    if wait is None:
        child.gave_up = True
        p = child.policy
        say(
            f"{child.name} crashed {p.max_crashes} times within {p.window_s:g}s: giving up on "
            "it"
            + (
                "; stopping the stack"
                if child.name == "gateway"
                else " (the other services keep serving; its stage fails until "
                "milo up is restarted)"
            )
        )
        return child.name != "gateway"
    child.restart_at = now + wait
    say(f"restarting {child.name} in {wait:g}s")
    return True


def _announce_serving(child: Child, stopping: threading.Event, say: Callable[[str], None]) -> None:
    try:
        wait_serving(child, time.monotonic() + 600, stopping)
    except (RuntimeError, TimeoutError, KeyboardInterrupt):
        return  # it died again (the supervisor reports it) or the stack is stopping
    say(f"{child.name} is SERVING again")


def _say(message: str) -> None:
    print(f"milo up: {message}", file=sys.stderr, flush=True)


def _print_table(children: list[Child]) -> None:
    print("\nMilo is up. Every service is SERVING:", flush=True)
    for child in children:
        print(
            f"  {child.name:<10} grpc {child.env[f'MILO_{child.name.upper()}_HOST']}:"
            f"{child.port:<6} metrics :{child.metrics_port}/metrics",
            flush=True,
        )
    gateway = children[-1]
    http = gateway.env.get("MILO_GATEWAY_HTTP_PORT", "8080")
    print(
        f"\nTalk to it:  milo converse --address 127.0.0.1:{gateway.port} --text 'Salama'\n"
        f"Web page:    http://127.0.0.1:{http}/   (HTTP API docs at /docs)\n"
        "Ctrl-C stops everything.",
        flush=True,
    )


def free_base_port() -> int:
    """A base for five consecutive ports (and their metrics at +100), likely free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return 40000 + s.getsockname()[1] % 20000


@contextmanager
def local_stack(
    models: Path,
    language: str = "en",
    gateway_env: dict[str, str] | None = None,
    timeout: float = 300.0,
) -> Iterator[dict[str, str]]:
    """The stack on free ports, quiet, for benchmarks: yields each one's host:port."""
    children = plan(models, "127.0.0.1", language, free_base_port())
    children[-1].env.update(gateway_env or {})
    for child in children:
        child.env[f"MILO_{child.name.upper()}_LOG_LEVEL"] = "WARNING"
    try:
        deadline = time.monotonic() + timeout
        for child in children:
            child.start()
            wait_serving(child, deadline)
        yield {c.name: f"127.0.0.1:{c.port}" for c in children}
    finally:
        stop_all(children)
