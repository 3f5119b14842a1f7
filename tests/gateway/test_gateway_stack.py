"""Tier 4: the whole stack, four services and the gateway as separate processes on loopback,
on the demo models; a client streams speech (espeak-ng) or text in and checks what comes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.audio.v1 import audio_pb2
from milo.client import MiloClient, Reply
from milo.gateway.v1 import gateway_pb2 as gw

sys.path.insert(0, str(Path(__file__).parents[1]))
from procs import ServiceProcess
from stack import SERVICES, DemoStack

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-s",
            "150",
            "-w",
            str(path),
            "Hello. What is the weather like in the capital today?",
        ],
        check=True,
    )
    return path


SAMPLING = {"max_tokens": 1000, "temperature": 0.8, "seed": 7}


def config(**kw) -> gw.SessionConfig:
    c = gw.SessionConfig(**kw)
    c.sampling.max_tokens, c.sampling.temperature = SAMPLING["max_tokens"], SAMPLING["temperature"]
    c.sampling.seed = SAMPLING["seed"]
    return c


async def wav_inputs(
    path: Path, realtime: bool = True, hold: tuple[asyncio.Event, float] | None = None
):
    """The WAV in 20 ms chunks (at real-time pace), then one second of silence, which ends
    the utterance. `hold` (event, s): the last s seconds of speech wait until the event is
    set (at most 120 s), the utterance still going on meanwhile."""
    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.getframerate() // 50
        data = w.readframes(w.getnframes())
    start = time.monotonic()
    silence = b"\x00\x00" * rate  # one second of silence after the speech ends the utterance
    audio = data + silence
    held_at = len(data) - int(hold[1] * rate) * 2 if hold else -1
    for i, offset in enumerate(range(0, len(audio), frames * 2)):
        if hold is not None and offset >= held_at:
            began = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(120):
                    await hold[0].wait()
            start += time.monotonic() - began  # real-time pace from here on
            hold = None
        yield audio[offset : offset + frames * 2]
        if realtime:
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))


def wav_format(path: Path) -> audio_pb2.AudioFormat:
    with wave.open(str(path), "rb") as w:
        return audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=w.getframerate(), channels=1
        )


async def collect(client: MiloClient, inputs, cfg, until_turn_end: bool = True):
    events = []
    async for event in client.converse(inputs, cfg, timeout=180):
        events.append(event)
    return events


def kinds(events, turn_id=None) -> list[str]:
    return [e.kind for e in events if turn_id in (None, e.turn_id)]


async def test_speech_turn_streams_events_in_order_and_audio_before_llm_ends(stack, speech_wav):
    # The STT sends a partial only if its decode ends while the utterance goes on; under load
    # one can outlast the rest of the speech. So the last 300 ms of speech wait until a
    # partial is out: the utterance is still going on when it comes, however slow the STT.
    partial = asyncio.Event()
    inputs = wav_inputs(speech_wav, hold=(partial, 0.3))
    events = []
    async with MiloClient(stack.procs["gateway"].address) as client:
        async for event in client.converse(
            inputs, config(input_format=wav_format(speech_wav)), timeout=180
        ):
            events.append(event)
            if event.kind == "transcript" and not event.payload.is_final:
                partial.set()
    turn = next(e.turn_id for e in events if e.kind == "transcript" and e.payload.is_final)
    k = kinds(events, turn)
    order = [
        "speech_started",
        "transcript",
        "translation",
        "llm_delta",
        "reply_sentence",
        "audio",
        "latency",
        "turn_ended",
    ]
    firsts = [k.index(name) for name in order]
    assert firsts == sorted(firsts), k
    finals = [e.payload for e in events if e.kind == "transcript" and e.payload.is_final]
    assert "weather" in finals[0].text.lower()
    partials = [e for e in events if e.kind == "transcript" and not e.payload.is_final]
    assert partials, "no partial transcript before the final"
    last_delta = max(i for i, name in enumerate(k) if name == "llm_delta")
    latency = next(e.payload for e in events if e.kind == "latency" and e.turn_id == turn)
    assert k.index("audio") < last_delta, f"first audio came after the LLM finished: {latency}"
    for field in (
        "stt_final_ms",
        "translate_in_ms",
        "llm_first_token_ms",
        "tts_first_audio_ms",
        "end_of_speech_to_first_audio_ms",
    ):
        assert latency.HasField(field), field
    ended = next(e.payload for e in events if e.kind == "turn_ended" and e.turn_id == turn)
    errors = [e.payload for e in events if e.kind == "error"]
    assert ended.reason == gw.TurnEnded.REASON_COMPLETED, errors


def llm_metric(stack: DemoStack, name: str) -> float:
    """A metric of the LLM service, summed over its labels."""
    return stack.metric("llm", name)


async def llm_idle_tokens(stack: DemoStack) -> float:
    """Completion tokens generated so far, read once the model is idle (no generation)."""
    deadline = time.monotonic() + 30
    while llm_metric(stack, "milo_llm_generating") > 0:
        assert time.monotonic() < deadline, "the LLM never went idle"
        await asyncio.sleep(0.05)
    return llm_metric(stack, "milo_llm_completion_tokens_total")


MAX_TOKENS = 1500  # far more than is generated before the first audio, even on an idle machine;
# with the prompt it fits the LLM's default context of 2048 tokens per sequence


async def test_barge_in_stops_audio_and_generation_then_next_turn_works(stack):
    before = await llm_idle_tokens(stack)
    queue: asyncio.Queue = asyncio.Queue()
    queue.put_nowait("Tell me a long story about the sea.")

    async def inputs():
        while (item := await queue.get()) is not None:
            yield item

    events, stopped_at = [], None
    cfg = config()
    cfg.sampling.max_tokens = MAX_TOKENS
    async with MiloClient(stack.procs["gateway"].address) as client:
        async for event in client.converse(inputs(), cfg, timeout=180):
            events.append(event)
            first_audio = event.kind == "audio" and event.payload.chunk.index == 0
            if first_audio and event.turn_id == 1:
                queue.put_nowait(gw.Control.ACTION_BARGE_IN)
            if event.kind == "turn_ended" and event.turn_id == 1:
                stopped_at = await llm_idle_tokens(stack)
                queue.put_nowait("And now?")
            if first_audio and event.turn_id == 2:  # the next turn works: cut it short too
                queue.put_nowait(gw.Control.ACTION_CANCEL)
            if event.kind == "turn_ended" and event.turn_id == 2:
                queue.put_nowait(None)
    first = [e for e in events if e.turn_id == 1]
    stop = next(i for i, e in enumerate(first) if e.kind == "barged_in")
    assert not [e for e in first[stop:] if e.kind == "audio"], "audio after barge-in"
    assert first[-1].payload.reason == gw.TurnEnded.REASON_BARGED_IN
    assert stopped_at is not None and stopped_at - before < MAX_TOKENS, (
        "generation of the barged-in reply did not stop"
    )
    second = [e for e in events if e.turn_id == 2]
    assert [e for e in second if e.kind == "audio"], "the next turn sent no audio"
    assert second[-1].payload.reason == gw.TurnEnded.REASON_CANCELLED


async def test_text_out_french_and_client_brain_modes(stack):
    gateway = stack.procs["gateway"].address

    async def once(*items):
        for item in items:
            yield item

    async with MiloClient(gateway) as client:
        events = await collect(
            client, once("Bonjour"), config(user_language="fr", output_mode=gw.OUTPUT_MODE_TEXT)
        )
        assert "translation" not in kinds(events) and "audio" not in kinds(events)
        assert "reply_sentence" in kinds(events) and "llm_delta" in kinds(events)
        sentences = [e.payload for e in events if e.kind == "reply_sentence"]
        assert all(s.text == s.pivot_text for s in sentences)  # French: no translation

        replies: asyncio.Queue = asyncio.Queue()
        replies.put_nowait("Hello there")

        async def brain_inputs():
            while (item := await replies.get()) is not None:
                yield item

        events = []
        async for event in client.converse(
            brain_inputs(), config(brain=gw.BRAIN_CLIENT), timeout=120
        ):
            events.append(event)
            if event.kind == "translation":
                replies.put_nowait(Reply("Très bien, merci."))
            if event.kind == "turn_ended":
                replies.put_nowait(None)
        assert "llm_delta" not in kinds(events)
        assert "audio" in kinds(events) and events[-1].payload.reason == (
            gw.TurnEnded.REASON_COMPLETED
        )


@pytest.fixture
def own_translate(stack: DemoStack) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A translate process of this test's own, on a fixed port (so that a restarted one is
    found again), and a gateway over it and the shared stt, llm and tts."""
    env = {"MILO_MODELS_DIR": str(stack.models), "MILO_TRANSLATE_PORT": str(free_port())}
    translate = ServiceProcess("services.translate", env, prefix="MILO_TRANSLATE_").start()
    services = [translate if n == "translate" else stack.service(n) for n in SERVICES]
    try:
        gateway = stack.gateway_over(services, MILO_GATEWAY_TRANSLATE_TIMEOUT_S="5")
    except BaseException:
        translate.stop()
        raise
    procs = [translate, gateway]
    yield translate, gateway
    for proc in procs:
        proc.stop()


async def test_translate_killed_gives_error_event_then_recovers(own_translate):
    translate, gateway_proc = own_translate
    gateway = gateway_proc.address
    translate.kill()

    async def once():
        yield "Hello"

    async with MiloClient(gateway) as client:
        started = time.monotonic()
        events = await collect(client, once(), config(output_mode=gw.OUTPUT_MODE_TEXT))
        elapsed = time.monotonic() - started
        errors = [e.payload for e in events if e.kind == "error"]
        assert errors and errors[0].stage == gw.STAGE_TRANSLATE_IN, kinds(events)
        assert elapsed < 5 + 3, f"error took {elapsed:.1f}s, past the 5 s stage deadline"
        with grpc.insecure_channel(gateway) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        translate.start()
        events = await collect(client, once(), config(output_mode=gw.OUTPUT_MODE_TEXT))
        assert events[-1].payload.reason == gw.TurnEnded.REASON_COMPLETED, kinds(events)


async def test_bad_client_streams_get_clear_errors(stack):
    channel = grpc.aio.insecure_channel(stack.procs["gateway"].address)
    from milo.gateway.v1 import gateway_pb2_grpc

    stub = gateway_pb2_grpc.ConversationStub(channel)

    async def audio_first():
        yield gw.ConverseRequest(audio=b"\x00\x00")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.Converse(audio_first()):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    async def mistakes():
        yield gw.ConverseRequest(config=gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT))
        yield gw.ConverseRequest(config=gw.SessionConfig())
        yield gw.ConverseRequest(control=gw.Control(action=9))
        yield gw.ConverseRequest(audio=b"\x00" * (1024 * 1024))

    errors = [e.error.message async for e in stub.Converse(mistakes()) if e.HasField("error")]
    assert len(errors) == 3, errors
    await channel.close()
