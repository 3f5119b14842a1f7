"""Fakes for tier-2 HTTP tests: the gateway's fake services (tests/gateway/fakes.py) plus a
fake Recognize and switches that make a service answer with a given status code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from milo.stt.v1 import stt_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.interceptors import ERROR_REASON_KEY

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from fakes import FakeLlm, FakeServices, FakeStt, FakeTranslate, FakeTts

__all__ = ["FakeLlm", "FakeServices", "FakeTranslate", "FakeTts", "HttpFakes"]


class RecognizingStt(FakeStt):
    """Recognize answers "hello there" with one segment of two words."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[stt_pb2.RecognizeRequest] = []
        self.fail: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] | None = None
        self.hold: asyncio.Event | None = None  # Recognize waits on it when set

    async def Recognize(self, request, context):
        self.requests.append(request)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            code, message, trailers = self.fail
            await context.abort(code, message, trailers)
        words = [
            stt_pb2.Word(word=" hello", start_ms=0, end_ms=400, probability=0.9),
            stt_pb2.Word(word=" there", start_ms=400, end_ms=900, probability=0.8),
        ]
        segment = stt_pb2.Segment(
            text=" hello there",
            start_ms=0,
            end_ms=900,
            avg_logprob=-0.2,
            no_speech_prob=0.01,
            words=words,
        )
        return stt_pb2.RecognizeResponse(
            text="hello there",
            segments=[segment],
            language=request.config.language or "en",
            audio_duration_ms=1000,
            processing_ms=12.5,
        )


class VoicedTts(FakeTts):
    """FakeTts with two voices in its Describe, recording each request."""

    VOICES = ("mlg_rakoto", "mlg_soa")

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tts_pb2.SynthesizeRequest] = []

    async def Describe(self, request, context):
        return tts_pb2.DescribeResponse(
            model_id="fake-tts",
            default_voice=self.VOICES[0],
            voices=[tts_pb2.Voice(name=v, language="mg") for v in self.VOICES],
        )

    async def Synthesize(self, request, context):
        self.requests.append(request)
        async for reply in super().Synthesize(request, context):
            yield reply


class ContextLlm(FakeLlm):
    """FakeLlm whose context holds `context_chars` characters: past it, the LLM service's
    answer (INVALID_ARGUMENT with the context_length_exceeded reason)."""

    context_chars = 2000

    async def Chat(self, request, context):
        if sum(len(m.content) for m in request.messages[-1:]) > self.context_chars:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the last message takes 9000 tokens; the context is 2048",
                ((ERROR_REASON_KEY, "context_length_exceeded"),),
            )
        async for reply in super().Chat(request, context):
            yield reply


class HttpFakes(FakeServices):
    def __init__(self) -> None:
        super().__init__()
        self.stt = RecognizingStt()
        self.tts = VoicedTts()
        self.llm = ContextLlm()
