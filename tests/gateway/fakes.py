"""Fake STT, translate, LLM and TTS servicers for tier-2 gateway tests: real gRPC servers
on port 0 with scripted behaviour, so the gateway's orchestration is tested without models.
The real services are exercised by the tier-4 tests (test_gateway_stack.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.config import GatewaySettings
from gateway.service import GatewayService
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.server import ServiceHost


class FakeTranslate(translate_pb2_grpc.TranslatorServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail: grpc.StatusCode | None = None

    async def Translate(self, request, context):
        if self.fail is not None:
            await context.abort(self.fail, "translate is broken")
        self.calls.append((request.texts[0], request.source_language, request.target_language))
        out = [
            translate_pb2.Translation(text=f"[{request.target_language}] {t}")
            for t in request.texts
        ]
        return translate_pb2.TranslateResponse(translations=out)


class FakeLlm(llm_pb2_grpc.LlmServicer):
    """Streams `reply` word by word. With `gate`, waits on it after the first sentence."""

    def __init__(self, reply: str = "Bonjour. Comment allez-vous? Très bien.") -> None:
        self.reply = reply
        self.gate: asyncio.Event | None = None
        self.requests: list[llm_pb2.ChatRequest] = []
        self.produced = 0
        self.cancelled = asyncio.Event()

    async def Chat(self, request, context):
        self.requests.append(request)
        self.produced = 0
        try:
            for word in self.reply.split(" "):
                self.produced += 1
                yield llm_pb2.ChatResponse(delta=llm_pb2.ChatDelta(text=word + " "))
                if self.gate is not None and word.endswith("."):
                    await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        yield llm_pb2.ChatResponse(
            done=llm_pb2.ChatDone(
                finish_reason=llm_pb2.FINISH_REASON_STOP,
                usage=llm_pb2.Usage(prompt_tokens=5, completion_tokens=self.produced),
            )
        )


class FakeTts(tts_pb2_grpc.TtsServicer):
    """100 ms of 16 kHz PCM per word, in 2 chunks per word. A text in `refuse` gets
    INVALID_ARGUMENT, as the real TTS answers a text it has nothing to say in."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.refuse: set[str] = set()

    async def Synthesize(self, request, context):
        if request.text in self.refuse:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "nothing to say")
        self.texts.append(request.text)
        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000, channels=1
            )
        )
        for i in range(2 * len(request.text.split())):
            yield tts_pb2.SynthesizeResponse(
                audio=audio_pb2.AudioChunk(
                    data=b"\x01\x00" * 800, index=i, offset_ms=50.0 * i, duration_ms=50.0
                )
            )


class FakeStt(stt_pb2_grpc.SttServicer):
    """Speech starts on the first audio; the final (`text`) comes when the stream half-closes
    or after `final_after` bytes."""

    def __init__(self, text: str = "hello there", final_after: int = 32000) -> None:
        self.text, self.final_after = text, final_after
        self.fail: grpc.StatusCode | None = None  # the stream fails on its first audio

    async def StreamingRecognize(self, request_iterator, context):
        config = await anext(aiter(request_iterator))
        assert config.HasField("config")
        if self.fail is not None:
            await anext(aiter(request_iterator))
            await context.abort(self.fail, "stt is broken")
        heard, started = 0, False
        async for request in request_iterator:
            if not started:
                started = True
                yield stt_pb2.StreamingRecognizeResponse(
                    speech_started=stt_pb2.SpeechStarted(utterance_index=0, offset_ms=0)
                )
            heard += len(request.audio)
            if heard >= self.final_after:
                break
        if started:
            yield stt_pb2.StreamingRecognizeResponse(
                result=stt_pb2.RecognitionResult(
                    is_final=False, text=(self.text.split() or [""])[0], language="mg"
                )
            )
            yield stt_pb2.StreamingRecognizeResponse(
                speech_ended=stt_pb2.SpeechEnded(utterance_index=0, offset_ms=1000)
            )
            yield stt_pb2.StreamingRecognizeResponse(
                result=stt_pb2.RecognitionResult(is_final=True, text=self.text, language="mg")
            )


class FakeServices:
    """The four fakes, each on its own server bound to 127.0.0.1:0."""

    def __init__(self) -> None:
        self.stt, self.translate = FakeStt(), FakeTranslate()
        self.llm, self.tts = FakeLlm(), FakeTts()
        self.servers: dict[str, grpc.aio.Server] = {}
        self.addresses: dict[str, str] = {}

    async def start(self) -> None:
        adders = {
            "stt": (stt_pb2_grpc.add_SttServicer_to_server, self.stt),
            "translate": (translate_pb2_grpc.add_TranslatorServicer_to_server, self.translate),
            "llm": (llm_pb2_grpc.add_LlmServicer_to_server, self.llm),
            "tts": (tts_pb2_grpc.add_TtsServicer_to_server, self.tts),
        }
        for name, (add, servicer) in adders.items():
            server = grpc.aio.server()
            add(servicer, server)
            status = health.aio.HealthServicer()
            await status.set("", health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(status, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servers[name], self.addresses[name] = server, f"127.0.0.1:{port}"

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop(0)


async def serve_gateway(fakes: FakeServices, **overrides: Any) -> ServiceHost:
    """The gateway (gRPC and its HTTP bridge, both on free ports) in this process, over
    the fakes; `host.service` is the GatewayService, `host.port` its gRPC port."""
    a = fakes.addresses
    values: dict[str, Any] = dict(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        http_port=0,
        stt_address=a["stt"],
        translate_address=a["translate"],
        llm_address=a["llm"],
        tts_address=a["tts"],
        translate_timeout_s=3,
        unary_retries=1,
    )
    settings = GatewaySettings(**(values | overrides))
    host = ServiceHost(GatewayService(settings), settings)
    await host.start()
    return host


class Conversation:
    """A Converse call driven by the test: send messages, read events up to a condition."""

    def __init__(self, stub: Any, config: gw.SessionConfig) -> None:
        self.outgoing: asyncio.Queue[gw.ConverseRequest | None] = asyncio.Queue()
        self.outgoing.put_nowait(gw.ConverseRequest(config=config))
        self.call = stub.Converse(self._requests(), timeout=30)
        self.events: list[gw.ConverseResponse] = []

    async def _requests(self) -> Any:
        while (item := await self.outgoing.get()) is not None:
            yield item

    def send(self, **kw: Any) -> None:
        self.outgoing.put_nowait(gw.ConverseRequest(**kw))

    def close(self) -> None:
        self.outgoing.put_nowait(None)

    async def until(self, kind: str, turn_id: int | None = None) -> gw.ConverseResponse:
        async for event in self.call:
            self.events.append(event)
            if event.WhichOneof("event") == kind and turn_id in (None, event.turn_id):
                return event
        raise AssertionError(f"stream ended before {kind}: {self.kinds()}")

    def kinds(self, turn_id: int | None = None) -> list[str]:
        return [e.WhichOneof("event") for e in self.events if turn_id in (None, e.turn_id)]
