"""Tier 4: a conversation over WS /v1/converse yields the gRPC Converse events and audio."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import pytest
import websockets

pytestmark = pytest.mark.slow


def pcm_chunks(path: Path, ms: int = 100) -> tuple[int, list[bytes]]:
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        data = w.readframes(w.getnframes()) + b"\x00\x00" * rate  # 1 s of silence after
    step = rate * ms // 1000 * 2
    return rate, [data[i : i + step] for i in range(0, len(data), step)]


class Events:
    def __init__(self, ws) -> None:
        self.ws, self.events, self.audio = ws, [], []

    async def until(self, kind: str, within: float = 120.0) -> dict:
        async with asyncio.timeout(within):
            while True:
                frame = await self.ws.recv()
                if isinstance(frame, bytes):
                    assert self.events[-1]["event"] == "audio"  # bytes follow their event
                    assert len(frame) == self.events[-1]["audio"]["chunk"]["bytes"]
                    self.audio.append(frame)
                    continue
                event = json.loads(frame)
                self.events.append(event)
                if event["event"] == kind:
                    return event

    def kinds(self, turn_id: int) -> list[str]:
        return [e["event"] for e in self.events if e["turn_id"] == turn_id]


async def test_speech_in_events_and_audio_out(stack, speech_wav):
    rate, chunks = pcm_chunks(speech_wav)
    url = f"ws://127.0.0.1:{stack.gateway.http_port}/v1/converse"
    async with websockets.connect(url, max_size=None) as ws:
        config = {
            "input_format": {
                "encoding": "AUDIO_ENCODING_PCM_S16LE",
                "sample_rate_hz": rate,
                "channels": 1,
            },
            "sampling": {"max_tokens": 48, "seed": 7},
        }
        await ws.send(json.dumps({"config": config}))
        events = Events(ws)
        started = await events.until("session_started")
        assert started["turn_id"] == 0 and started["session_started"]["session_id"]
        for chunk in chunks:
            await ws.send(chunk)
        await ws.send(json.dumps({"control": {"action": "ACTION_END_OF_UTTERANCE"}}))
        ended = await events.until("turn_ended")
        final = next(
            e for e in events.events if e["event"] == "transcript" and e["transcript"]["is_final"]
        )
        assert "weather" in final["transcript"]["text"].lower()
        kinds = events.kinds(ended["turn_id"])
        assert (
            kinds.index("speech_started")
            < kinds.index("translation")
            < kinds.index("llm_delta")
            < kinds.index("reply_sentence")
            < kinds.index("audio")
        )
        assert kinds[-2:] == ["latency", "turn_ended"]
        assert ended["turn_ended"]["reason"] == "REASON_COMPLETED"
        first_audio = next(e for e in events.events if e["event"] == "audio")
        assert first_audio["audio"]["format"]["sample_rate_hz"] == 16000
        assert sum(len(a) for a in events.audio) > 3200
        latency = next(e["latency"] for e in events.events if e["event"] == "latency")
        assert latency["end_of_speech_to_first_audio_ms"] > 0


async def test_text_turn_barge_in_and_bad_frames(stack):
    url = f"ws://127.0.0.1:{stack.gateway.http_port}/v1/converse"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(
            json.dumps(
                {"config": {"user_language": "fr", "sampling": {"max_tokens": 200, "seed": 1}}}
            )
        )
        events = Events(ws)
        await events.until("session_started")
        await ws.send("{not json")
        error = await events.until("error")
        assert error["error"]["code"] == "INVALID_ARGUMENT" and error["turn_id"] == 0
        await ws.send(json.dumps({"text": {"text": "Raconte une longue histoire."}}))
        await events.until("llm_delta")
        await ws.send(json.dumps({"control": {"action": "ACTION_BARGE_IN"}}))
        ended = await events.until("turn_ended")
        assert ended["turn_ended"]["reason"] == "REASON_BARGED_IN"
        assert "barged_in" in events.kinds(ended["turn_id"])


async def test_audio_before_config_closes_with_4400(stack):
    url = f"ws://127.0.0.1:{stack.gateway.http_port}/v1/converse"
    async with websockets.connect(url) as ws:
        await ws.send(b"\x00\x00" * 160)
        error = json.loads(await ws.recv())
        assert error["event"] == "error" and "SessionConfig" in error["error"]["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4400
