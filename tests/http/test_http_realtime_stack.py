"""Tier 4: the official `openai` SDK's realtime client against /v1/realtime on the demo
stack (four services on the demo models and the gateway, each in its own process; the
demo STT is tiny.en, so speech is English). Auth and client secrets: test_http_realtime.py
(tier 2, where the clock can be moved)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import openai
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SERVER_VAD = {"type": "server_vad", "silence_duration_ms": 400}


def speech(path: Path, rate: int, codec: str | None = None) -> bytes:
    """The WAV's speech then 1 s of silence, as s16le mono at `rate` (or G.711 `codec`)."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        frames += resampler.resample(None)
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype("<i2")
    pcm = np.concatenate([pcm, np.zeros(rate, "<i2")])
    if codec is None:
        return pcm.tobytes()
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"  # type: ignore[attr-defined]
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return b"".join(bytes(p) for p in encoder.encode(frame))  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def realtime(stack: Any) -> AsyncIterator[Any]:
    client = openai.AsyncOpenAI(base_url=f"{stack.base}/v1", api_key="unused", max_retries=0)
    async with client.realtime.connect(model="milo") as conn:
        assert (await conn.recv()).type == "session.created"
        yield conn


async def until(conn: Any, kind: str, seen: list[Any] | None = None) -> Any:
    async with asyncio.timeout(120):
        while True:
            event = await conn.recv()
            if seen is not None:
                seen.append(event)
            if event.type == kind:
                return event


async def append(conn: Any, audio: bytes, chunk: int) -> None:
    for i in range(0, len(audio), chunk):
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + chunk]).decode())


def llm_cancelled(stack: Any) -> float:
    port = stack.procs["llm"].metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("milo_llm_replies_total{") and 'finish_reason="cancelled"' in line
    )


async def test_a_spoken_turn_then_barge_in_by_speech(stack, speech_wav: Path):
    audio = speech(speech_wav, 24_000)
    async with realtime(stack) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": 1500,
                "audio": {
                    "input": {"transcription": {"model": "whisper-1"}, "turn_detection": SERVER_VAD}
                },
            }
        )
        await until(conn, "session.updated")
        await append(conn, audio, 960)  # 20 ms chunks
        seen: list[Any] = []
        await until(conn, "response.output_audio_transcript.delta", seen)
        kinds = [e.type for e in seen]
        for kind in (
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "response.created",
        ):
            assert kind in kinds
        final = next(
            e for e in seen if e.type == "conversation.item.input_audio_transcription.completed"
        )
        assert "weather" in final.transcript.lower()
        await append(conn, audio, 960)  # the user speaks over the reply (1500 tokens long)
        barge: list[Any] = []
        done = await until(conn, "response.done", barge)
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        # OpenAI's order: the VAD start event, then the response it interrupts ends
        assert "input_audio_buffer.speech_started" in [e.type for e in barge]


async def test_a_text_turn_cancelled_mid_reply_stops_the_llm(stack):
    async with realtime(stack) as conn:
        await conn.send({"type": "no.such.event"})  # type: ignore[arg-type]
        assert (await until(conn, "error")).error.type == "invalid_request_error"
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 1500})
        await until(conn, "session.updated")
        before = llm_cancelled(stack)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Tell me a long story about the sea."}],
            }
        )
        await conn.response.create()
        await until(conn, "response.output_audio.delta")
        await conn.response.cancel()
        done = await until(conn, "response.done")
        assert done.response.status == "cancelled"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while llm_cancelled(stack) <= before:  # the LLM ended its generation as cancelled
            assert loop.time() < deadline, "the LLM did not stop"
            await asyncio.sleep(0.1)


async def test_a_mu_law_8khz_session_round_trip(stack, speech_wav: Path):
    audio = speech(speech_wav, 8_000, "pcm_mulaw")
    async with realtime(stack) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": 60,
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "turn_detection": SERVER_VAD},
                    "output": {"format": {"type": "audio/pcmu"}},
                },
            }
        )
        await until(conn, "session.updated")
        await append(conn, audio, 160)  # 20 ms of 8 kHz mu-law
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
    assert done.response.status == "completed"
    assert done.response.audio.output.format.type == "audio/pcmu"
    out = b"".join(
        base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"
    )
    decoder = av.CodecContext.create("pcm_mulaw", "r")
    decoder.sample_rate, decoder.layout = 8000, "mono"  # type: ignore[attr-defined]
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in decoder.decode(av.Packet(out))])  # type: ignore[attr-defined]
    assert len(samples) == len(out) > 8000 * 0.2  # one byte a sample, some speech
    assert np.abs(samples.astype(float)).max() > 100  # not silence
