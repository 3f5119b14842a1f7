"""Fake STT, translate, LLM, TTS and gateway servicers for tier-2 load-test tests, each hosted
by the real service runtime (admission control included) on 127.0.0.1:0.

`hold=True` makes every call wait until it is cancelled (its deadline passes), so tests can
fill a server without timing guesses. The gateway fake can answer a turn with a TurnError.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.config import ServiceSettings
from services.runtime.errors import InvalidArgument
from services.runtime.server import ServiceHost

FORMAT = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000, channels=1
)


class Fake:
    """Shared by the fakes: calls seen, and an optional hold until cancelled."""

    def __init__(self) -> None:
        self.hold = False
        self.calls = 0
        self.entered = asyncio.Event()

    async def enter(self) -> None:
        self.calls += 1
        self.entered.set()
        if self.hold:
            await asyncio.Event().wait()  # until the client's deadline cancels the call


class FakeTranslate(Fake, translate_pb2_grpc.TranslatorServicer):
    async def Describe(self, request, context):
        return translate_pb2.DescribeResponse(model_id="fake-nllb", device="cpu")

    async def Translate(self, request, context):
        await self.enter()
        if not request.texts:
            raise InvalidArgument("texts is empty")
        out = [
            translate_pb2.Translation(text=t[::-1], output_tokens=len(t.split()))
            for t in request.texts
        ]
        return translate_pb2.TranslateResponse(translations=out)


class FakeLlm(Fake, llm_pb2_grpc.LlmServicer):
    async def Describe(self, request, context):
        return llm_pb2.DescribeResponse(model_id="fake-llama", device="cpu")

    async def Chat(self, request, context):
        await self.enter()
        n = request.sampling.max_tokens if request.sampling.HasField("max_tokens") else 5
        for i in range(n):
            yield llm_pb2.ChatResponse(delta=llm_pb2.ChatDelta(text=f"mot{i} "))
        yield llm_pb2.ChatResponse(
            done=llm_pb2.ChatDone(
                finish_reason=llm_pb2.FINISH_REASON_LENGTH,
                usage=llm_pb2.Usage(prompt_tokens=3, completion_tokens=n),
            )
        )


class FakeTts(Fake, tts_pb2_grpc.TtsServicer):
    async def Describe(self, request, context):
        return tts_pb2.DescribeResponse(model_id="fake-vits", device="cpu")

    async def Synthesize(self, request, context):
        await self.enter()
        yield tts_pb2.SynthesizeResponse(format=FORMAT)
        for i in range(3):
            yield tts_pb2.SynthesizeResponse(
                audio=audio_pb2.AudioChunk(
                    data=b"\0\0" * 1600, index=i, offset_ms=100.0 * i, duration_ms=100.0
                )
            )
        yield tts_pb2.SynthesizeResponse(
            done=tts_pb2.SynthesisDone(sentences=1, audio_duration_ms=300.0)
        )


class FakeStt(Fake, stt_pb2_grpc.SttServicer):
    """A partial after the first audio, one final once the client half-closes."""

    def __init__(self) -> None:
        super().__init__()
        self.formats: list[audio_pb2.AudioFormat] = []

    async def Describe(self, request, context):
        return stt_pb2.DescribeResponse(
            model_id="fake-whisper", default_language="en", device="cpu"
        )

    async def Recognize(self, request, context):
        await self.enter()
        return stt_pb2.RecognizeResponse(text="hello", language="en")

    async def StreamingRecognize(self, request_iterator, context):
        await self.enter()
        first = await anext(aiter(request_iterator))
        self.formats.append(first.config.format)
        heard = 0
        async for request in request_iterator:
            heard += len(request.audio)
            if heard == len(request.audio):
                yield stt_pb2.StreamingRecognizeResponse(
                    result=stt_pb2.RecognitionResult(is_final=False, text="hel")
                )
        yield stt_pb2.StreamingRecognizeResponse(
            result=stt_pb2.RecognitionResult(is_final=True, text="hello")
        )


class FakeGateway(Fake, gateway_pb2_grpc.ConversationServicer):
    """One turn per session once the client half-closes; `error` makes it a failed turn."""

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None

    async def Describe(self, request, context):
        return gw.DescribeResponse(version="fake", default_user_language="en")

    async def Converse(self, request_iterator, context):
        await self.enter()
        async for _ in request_iterator:
            pass
        yield gw.ConverseResponse(session_started=gw.SessionStarted(session_id="s"))
        yield gw.ConverseResponse(turn_id=1, transcript=gw.Transcript(is_final=True, text="hi"))
        if self.error:
            yield gw.ConverseResponse(
                turn_id=1,
                error=gw.TurnError(stage=gw.STAGE_LLM, code=self.error, message="llm is busy"),
            )
            yield gw.ConverseResponse(
                turn_id=1, turn_ended=gw.TurnEnded(reason=gw.TurnEnded.REASON_ERROR)
            )
            return
        yield gw.ConverseResponse(turn_id=1, reply_sentence=gw.ReplySentence(text="Salama."))
        yield gw.ConverseResponse(
            turn_id=1,
            audio=gw.AudioOut(
                format=FORMAT, chunk=audio_pb2.AudioChunk(data=b"\0\0" * 1600, duration_ms=100.0)
            ),
        )
        yield gw.ConverseResponse(
            turn_id=1, turn_ended=gw.TurnEnded(reason=gw.TurnEnded.REASON_COMPLETED)
        )


ADDERS: dict[str, tuple[Callable[[], Fake], Callable[[Any, grpc.aio.Server], None], str]] = {
    "translate": (
        FakeTranslate,
        translate_pb2_grpc.add_TranslatorServicer_to_server,
        "milo.translate.v1.Translator",
    ),
    "llm": (FakeLlm, llm_pb2_grpc.add_LlmServicer_to_server, "milo.llm.v1.Llm"),
    "tts": (FakeTts, tts_pb2_grpc.add_TtsServicer_to_server, "milo.tts.v1.Tts"),
    "stt": (FakeStt, stt_pb2_grpc.add_SttServicer_to_server, "milo.stt.v1.Stt"),
    "gateway": (
        FakeGateway,
        gateway_pb2_grpc.add_ConversationServicer_to_server,
        "milo.gateway.v1.Conversation",
    ),
}


class FakeService:
    """A fake servicer as a runtime Service, for ServiceHost."""

    model_id = "fake"
    device = "cpu"

    def __init__(self, name: str) -> None:
        make, self._add, full_name = ADDERS[name]
        self.name, self.service_names = name, (full_name,)
        self.servicer = make()

    def register(self, server: grpc.aio.Server) -> None:
        self._add(self.servicer, server)

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass


async def start_fake(
    name: str, max_concurrency: int = 4, max_queue: int = 32
) -> tuple[ServiceHost, Any]:
    """(the host, its fake servicer), SERVING on 127.0.0.1:<host.port>."""
    service = FakeService(name)
    settings = ServiceSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
    )
    host = ServiceHost(service, settings)
    await host.start()
    return host, service.servicer


def write_wav(path: Path, seconds: float = 0.3, rate: int = 16000) -> Path:
    """A 16-bit mono WAV of a quiet square wave."""
    frames = int(seconds * rate)
    samples = b"".join(
        (1000 if (i // 40) % 2 else -1000).to_bytes(2, "little", signed=True) for i in range(frames)
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples)
    return path
