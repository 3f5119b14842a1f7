"""Tier 2: `milo loadtest conversation` against the gateway in this process, over fake
services; a TTS that streams slower than real time on purpose proves the glitch detector."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from milo.audio.v1 import audio_pb2
from milo.tts.v1 import tts_pb2
from services.loadtest.conversation import Plan
from services.loadtest.conversation_app import ConversationConfig, run_conversations
from services.loadtest.conversation_report import parse_objective
from services.loadtest.target import TargetOptions

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from fakes import FakeServices, serve_gateway

RATE = 16_000


def tts_paced(chunk_s: float, every_s: float) -> Any:
    """A TTS Synthesize that sends 2 chunks of `chunk_s` seconds per word, one every
    `every_s` seconds (every_s > chunk_s: slower than real time)."""

    async def synthesize(
        request: tts_pb2.SynthesizeRequest, context: Any
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE, channels=1
            )
        )
        samples = int(RATE * chunk_s)
        for i in range(2 * len(request.text.split())):
            if i and every_s:
                await asyncio.sleep(every_s)
            yield tts_pb2.SynthesizeResponse(
                audio=audio_pb2.AudioChunk(
                    data=b"\x01\x00" * samples,
                    index=i,
                    offset_ms=1000 * chunk_s * i,
                    duration_ms=1000 * chunk_s,
                )
            )

    return synthesize


async def conversations(chunk_s: float, every_s: float, clients: tuple[int, ...]) -> dict[str, Any]:
    fakes = FakeServices()
    fakes.tts.Synthesize = tts_paced(chunk_s, every_s)  # type: ignore[method-assign]
    await fakes.start()
    host = await serve_gateway(fakes)
    try:
        cfg = ConversationConfig(
            f"127.0.0.1:{host.port}",
            clients,
            Plan(turns=2, think_s=0.05, timeout_s=60),
            TargetOptions(text_input=True, language="mg"),
            parse_objective("first_audio.p95<30s"),
            warmup_turns=0,
            verbose=False,
        )
        return await run_conversations(cfg)
    finally:
        await host.stop(grace=0)
        await fakes.stop()


async def test_turns_after_turns_with_stages_and_no_glitch_when_audio_comes_fast():
    doc = await conversations(chunk_s=1.0, every_s=0.0, clients=(1, 3))
    assert [lv["clients"] for lv in doc["levels"]] == [1, 3]
    for level in doc["levels"]:
        assert level["turns"] == level["succeeded"] == 2 * level["clients"], level["errors"]
        assert level["glitched_turns"] == 0 and level["early_replies"] == 0
        assert level["first_audio_ms"]["p95"] > 0
        assert {"translate_in", "llm_first_token", "tts_first_audio"} <= set(level["stages_ms"])
        assert level["objective"]["met"]
    assert doc["best_level"] == 3


async def test_a_tts_slower_than_real_time_shows_as_glitches():
    doc = await conversations(chunk_s=0.1, every_s=0.3, clients=(2,))
    level = doc["levels"][0]
    assert level["succeeded"] == 4
    assert level["glitched_turns"] == 4 and level["stalled_ms"] > 0
