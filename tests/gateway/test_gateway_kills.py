"""Tier 4: each of stt, translate, llm and tts killed (SIGKILL) during a conversation turn
under one `milo up`: the client gets an in-band error naming the stage within that stage's
deadline, the gateway stays up and reports the stage unavailable, milo up restarts the
service (and says why it exited), and the next turn of the same conversation succeeds."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.backends import SERVICE_NAMES
from gateway.up import free_base_port
from milo.audio.v1 import audio_pb2
from milo.client import Event, MiloClient
from milo.gateway.v1 import gateway_pb2 as gw

pytestmark = pytest.mark.tier4
DEADLINES = {"stt": 20.0, "translate": 20.0, "llm": 20.0, "tts": 20.0}  # s; a busy CI box
STAGES = {
    "stt": {gw.STAGE_STT},
    "translate": {gw.STAGE_TRANSLATE_IN, gw.STAGE_TRANSLATE_OUT},
    "llm": {gw.STAGE_LLM},
    "tts": {gw.STAGE_TTS},
}
MODULES = {
    "services.stt": "stt",
    "services.translate": "translate",
    "services.llm": "llm",
    "services.tts": "tts",
    "gateway": "gateway",
}
SERVING = health_pb2.HealthCheckResponse.SERVING


class MiloUp:
    def __init__(self, models: Path) -> None:
        self.base = free_base_port()
        self.log = Path(tempfile.mkstemp(suffix=".log")[1])
        env = {
            **os.environ,
            "MILO_GATEWAY_HTTP_PORT": "0",
            "MILO_GATEWAY_MAX_SENTENCE_CHARS": "40",
            "MILO_GATEWAY_STT_TIMEOUT_S": str(DEADLINES["stt"]),
            "MILO_GATEWAY_TRANSLATE_TIMEOUT_S": str(DEADLINES["translate"]),
            "MILO_GATEWAY_LLM_FIRST_TOKEN_TIMEOUT_S": str(DEADLINES["llm"]),
            "MILO_GATEWAY_TTS_TIMEOUT_S": str(DEADLINES["tts"]),
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "up",
                    "--models",
                    str(models),
                    "--base-port",
                    str(self.base),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.gateway = f"127.0.0.1:{self.base}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, within: float = 240) -> None:
        deadline = time.monotonic() + within
        while not re.search(pattern, self.text()):
            assert self.proc.poll() is None, f"milo up exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in time:\n{self.text()}"
            time.sleep(0.1)

    def pid(self, name: str) -> int:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        for pid in map(int, out.split()):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-m" in argv and MODULES.get(argv[argv.index(b"-m") + 1].decode()) == name:
                return pid
        raise AssertionError(f"no {name} process under milo up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def milo_up(demo_models):
    up = MiloUp(demo_models)
    try:
        up.wait_log(r"Milo is up")
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[bytes, int]:
    path = tmp_path_factory.mktemp("speech") / "hello.wav"
    subprocess.run(
        ["espeak-ng", "-s", "150", "-w", str(path), "What is the weather like today"], check=True
    )
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate()


class Conversation:
    """One Converse stream driven by a queue; its events read with deadlines."""

    def __init__(self, client: MiloClient, config: gw.SessionConfig) -> None:
        self.inputs: asyncio.Queue[object] = asyncio.Queue()
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read(client, config))

    async def _items(self) -> AsyncIterator[object]:
        while (item := await self.inputs.get()) is not None:
            yield item

    async def _read(self, client: MiloClient, config: gw.SessionConfig) -> None:
        try:
            async for event in client.converse(self._items(), config, timeout=600):
                await self.events.put(event)
        finally:
            await self.events.put(None)

    async def until(self, match: Callable[[Event], bool], within: float = 120) -> list[Event]:
        """The events up to and including the first that matches."""
        seen: list[Event] = []
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                assert event is not None, f"the conversation ended: {[e.kind for e in seen]}"
                seen.append(event)
                if match(event):
                    return seen

    async def close(self) -> None:
        self.inputs.put_nowait(None)
        await asyncio.wait_for(self.reader, 60)


async def feed_speech(conv: Conversation, audio: bytes, rate: int) -> None:
    """Speech at real-time pace in 20 ms chunks, then a second of silence (ends the utterance)."""
    step, start = rate // 50 * 2, time.monotonic()
    data = audio + b"\x00\x00" * rate
    for i, offset in enumerate(range(0, len(data), step)):
        conv.inputs.put_nowait(data[offset : offset + step])
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))


async def stage_health(gateway: str, name: str) -> int:
    async with grpc.aio.insecure_channel(gateway) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAMES.get(name, "")), timeout=5
        )
        return reply.status


async def kill_mid_turn(up: MiloUp, conv: Conversation, name: str) -> None:
    """SIGKILL the service; the turn must end with an in-band error naming its stage within
    the stage's deadline, while the gateway stays up. Translate calls are idempotent and
    retried (UNAVAILABLE, with backoff): when milo up has it back within those retries, the
    turn completes instead, which is as good for the user."""
    os.kill(up.pid(name), signal.SIGKILL)
    killed = time.monotonic()
    events = await conv.until(
        lambda e: e.kind in ("error", "turn_ended"), within=DEADLINES[name] + 30
    )
    elapsed = time.monotonic() - killed
    if name == "translate" and events[-1].kind == "turn_ended":
        assert events[-1].payload.reason == gw.TurnEnded.REASON_COMPLETED, events[-1]
        print(f"translate: the turn completed across the restart (retried), {elapsed:.1f}s")
    else:
        error = events[-1].payload
        assert events[-1].kind == "error", (name, [e.kind for e in events])
        assert error.stage in STAGES[name], (name, error)
        assert elapsed < DEADLINES[name], f"{name}: the error took {elapsed:.1f}s"
        ended = await conv.until(lambda e: e.kind == "turn_ended")
        assert ended[-1].payload.reason == gw.TurnEnded.REASON_ERROR
        print(
            f"{name}: in-band error {gw.Stage.Name(error.stage)} {error.code} after {elapsed:.1f}s"
        )
    assert await stage_health(up.gateway, "") == SERVING  # the gateway itself is up


async def back_again(up: MiloUp, name: str) -> None:
    """milo up said why it exited, restarted it, and the gateway sees it SERVING again."""
    up.wait_log(rf"{name} was killed by SIGKILL unexpectedly")
    up.wait_log(rf"dependency {name} at \S+ is (UNREACHABLE|NOT_SERVING)")  # said meanwhile
    deadline = time.monotonic() + 180
    while await stage_health(up.gateway, name) != SERVING:
        assert time.monotonic() < deadline, f"{name} never came back:\n{up.text()}"
        await asyncio.sleep(0.2)
    assert re.search(rf"{name} restarted \(pid \d+\)", up.text())


def session(text_out: bool, fmt: audio_pb2.AudioFormat | None = None) -> gw.SessionConfig:
    config = gw.SessionConfig(
        output_mode=gw.OUTPUT_MODE_TEXT if text_out else gw.OUTPUT_MODE_AUDIO_AND_TEXT,
        input_format=fmt,
    )
    config.sampling.max_tokens = 160  # sentences of 40 chars: more than the first is pending
    config.sampling.seed = 7
    config.barge_in = False  # a pause in the speech must not cut the reply being checked
    return config


def is_(kind: str, turn: int) -> Callable[[Event], bool]:
    return lambda e: e.kind == kind and e.turn_id == turn


async def next_turn_succeeds(conv: Conversation, turn: int, speak: Callable[[], object]) -> None:
    feeder = speak()
    events = await conv.until(is_("turn_ended", turn), within=240)
    if isinstance(feeder, asyncio.Task):
        await feeder
    errors = [e.payload for e in events if e.kind == "error"]
    assert not errors, errors
    assert events[-1].payload.reason == gw.TurnEnded.REASON_COMPLETED
    assert [e for e in events if e.kind == "reply_sentence" and e.turn_id == turn]


async def scenario(up: MiloUp, speech: tuple[bytes, int]) -> None:
    audio, rate = speech
    fmt = audio_pb2.AudioFormat(
        encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=rate, channels=1
    )
    async with MiloClient(up.gateway) as client:
        # stt: killed while it hears the user (after speech started, audio paused)
        conv = Conversation(client, session(text_out=True, fmt=fmt))
        feeder = asyncio.create_task(feed_speech(conv, audio, rate))
        await conv.until(lambda e: e.kind == "speech_started")
        feeder.cancel()
        await kill_mid_turn(up, conv, "stt")
        await back_again(up, "stt")
        await next_turn_succeeds(
            conv, 2, lambda: asyncio.create_task(feed_speech(conv, audio, rate))
        )
        await conv.close()

        # llm: killed while it generates; translate: while the reply is translated back;
        # tts: while it speaks. Each in its own conversation, killed at a point of the turn
        # where later sentences still need the service.
        for name, text_out, trigger in (
            ("llm", True, "llm_delta"),
            ("translate", True, "reply_sentence"),
            ("tts", False, "audio"),
        ):
            conv = Conversation(client, session(text_out))
            conv.inputs.put_nowait("Hello, tell me a story.")
            await conv.until(is_(trigger, 1))
            await kill_mid_turn(up, conv, name)
            await back_again(up, name)
            await next_turn_succeeds(conv, 2, lambda c=conv: c.inputs.put_nowait("And then?"))
            await conv.close()


def test_each_service_killed_mid_turn_then_the_conversation_goes_on(milo_up, speech):
    asyncio.run(scenario(milo_up, speech))
    assert milo_up.proc.poll() is None  # milo up kept the others serving throughout
    assert "giving up" not in milo_up.text()
