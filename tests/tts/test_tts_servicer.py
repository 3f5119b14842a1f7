"""Tier 2: the Tts servicer on a real gRPC server (port 0) with a fake speech engine."""

from __future__ import annotations

import asyncio
import itertools
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from milo.audio.v1 import audio_pb2
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.server import ServiceHost
from services.tts.config import TtsSettings
from services.tts.service import SERVICE_NAME, make_service

# One server for the module (starting and stopping one costs ~0.5 s); `engine` resets the
# fake's record before each test.
pytestmark = pytest.mark.asyncio(loop_scope="module")
Status = health_pb2.HealthCheckResponse
RATE = 16000
MS_PER_CHAR = 20


class FakeEngine:
    """20 ms of seeded noise per character (divided by speed); optional gate on a text."""

    model_id = "fake-vits"
    device = "cpu"
    sample_rate = RATE
    voices = ("mlg", "mlg-1")
    vocab = frozenset("abdefghijklmnoprstvyz '-")

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, int]] = []
        self.hold_on: str | None = None  # a segment containing this waits for `release`
        self.holding = threading.Event()
        self.release = threading.Event()

    def load(self) -> None: ...

    def close(self) -> None: ...

    def synthesize(self, text: str, voice: str, speed: float, seed: int) -> np.ndarray:
        self.calls.append((text, voice, speed, seed))
        if self.hold_on and self.hold_on in text:
            self.holding.set()
            self.release.wait(timeout=30)
        rng = np.random.default_rng([seed, zlib.crc32(text.encode())])
        count = int(len(text) * MS_PER_CHAR * RATE / 1000 / speed)
        return (rng.standard_normal(count) * 0.1).astype(np.float32)


def settings(**kw: object) -> TtsSettings:
    base: dict[str, object] = dict(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        sentence_pause_ms=0,
        clause_pause_ms=0,
    )
    return TtsSettings(**{**base, **kw})  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared() -> AsyncIterator[tuple[FakeEngine, ServiceHost]]:
    fake = FakeEngine()
    h = ServiceHost(make_service(settings(max_text_chars=6000), engine=fake), settings())
    await h.start()
    yield fake, h
    fake.release.set()
    await h.stop(grace=0)


@pytest.fixture
def engine(shared: tuple[FakeEngine, ServiceHost]) -> FakeEngine:
    fake = shared[0]
    fake.calls.clear()
    fake.hold_on = None
    return fake


@pytest.fixture
def host(shared: tuple[FakeEngine, ServiceHost], engine: FakeEngine) -> ServiceHost:
    return shared[1]


@pytest_asyncio.fixture(loop_scope="module")
async def stub(host: ServiceHost) -> AsyncIterator[tts_pb2_grpc.TtsStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        stub = tts_pb2_grpc.TtsStub(channel)
        stub.channel = channel  # type: ignore[attr-defined]
        yield stub


async def collect(stub: tts_pb2_grpc.TtsStub, **kw: object) -> list[tts_pb2.SynthesizeResponse]:
    return [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(**kw))]


def audio_of(replies: list[tts_pb2.SynthesizeResponse]) -> bytes:
    return b"".join(r.audio.data for r in replies if r.HasField("audio"))


async def serving(stub: tts_pb2_grpc.TtsStub) -> int:
    health = health_pb2_grpc.HealthStub(stub.channel)  # type: ignore[attr-defined]
    return (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))).status


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a server-side condition (checked every 10 ms); callers set a deadline."""
    for _ in itertools.count():
        if condition():
            return
        await asyncio.sleep(0.01)


TEXT = "Manao ahoana! Misy 3 trano eto. Veloma."


async def test_describe_lists_voices_rates_encodings_and_limits(stub) -> None:
    reply = await stub.Describe(tts_pb2.DescribeRequest())
    assert reply.model_id == "fake-vits" and reply.device == "cpu"
    assert [v.name for v in reply.voices] == ["mlg", "mlg-1"]
    assert {v.language for v in reply.voices} == {"mg"}
    assert reply.voices[0].native_sample_rate_hz == RATE
    assert reply.default_voice == "mlg"
    assert {16000, 22050, 24000, 48000} <= set(reply.sample_rates_hz)
    assert set(reply.encodings) == {
        audio_pb2.AUDIO_ENCODING_PCM_S16LE,
        audio_pb2.AUDIO_ENCODING_PCM_F32LE,
        audio_pb2.AUDIO_ENCODING_WAV,
    }
    assert reply.max_text_chars == 6000 and reply.max_chunk_ms == 200


async def test_stream_is_format_then_sentences_with_ordered_bounded_chunks_then_done(stub):
    replies = await collect(stub, text=TEXT)
    kinds = [r.WhichOneof("event") for r in replies]
    assert kinds[0] == "format" and kinds[-1] == "done"
    assert replies[0].format.encoding == audio_pb2.AUDIO_ENCODING_PCM_S16LE
    assert replies[0].format.sample_rate_hz == RATE and replies[0].format.channels == 1
    sentences = [r.sentence for r in replies if r.HasField("sentence")]
    assert [s.sentence_index for s in sentences] == [0, 1, 2]
    assert [s.text for s in sentences] == ["Manao ahoana!", "Misy 3 trano eto.", "Veloma."]
    assert sentences[1].normalized_text == "misy telo trano eto"
    # every sentence is followed by its audio before the next one starts
    assert kinds[1] == "sentence" and kinds[2] == "audio"
    chunks = [r.audio for r in replies if r.HasField("audio")]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(0 < c.duration_ms <= 200 and len(c.data) <= RATE * 2 // 5 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.offset_ms == pytest.approx(before.offset_ms + before.duration_ms)
    done = replies[-1].done
    total_ms = sum(c.duration_ms for c in chunks)
    assert done.sentences == 3 and done.audio_duration_ms == pytest.approx(total_ms)
    assert len(audio_of(replies)) == pytest.approx(total_ms * RATE / 1000 * 2, abs=2)
    assert 0 < done.first_chunk_ms <= done.processing_ms
    assert done.dropped_characters == 0


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
async def test_requested_sample_rate_is_honored(stub, rate: int) -> None:
    replies = await collect(stub, text=TEXT, sample_rate_hz=rate)
    assert replies[0].format.sample_rate_hz == rate
    done = replies[-1].done
    chars = len("manao ahoana") + len("misy telo trano eto") + len("veloma")
    assert done.audio_duration_ms == pytest.approx(chars * MS_PER_CHAR, abs=3)
    samples = len(audio_of(replies)) // 2
    assert samples == pytest.approx(done.audio_duration_ms * rate / 1000, abs=3)


async def test_same_seed_same_audio_other_seed_other_audio(stub, engine) -> None:
    first = audio_of(await collect(stub, text=TEXT, seed=7))
    again = audio_of(await collect(stub, text=TEXT, seed=7))
    other = audio_of(await collect(stub, text=TEXT, seed=8))
    default_1 = audio_of(await collect(stub, text=TEXT))
    default_2 = audio_of(await collect(stub, text=TEXT))
    assert first == again and default_1 == default_2
    assert first != other
    assert [c[3] for c in engine.calls[:3]] == [7, 8, 9]  # one seed per segment, in order


async def test_speed_and_voice_reach_the_engine(stub, engine) -> None:
    normal = (await collect(stub, text="Manao ahoana"))[-1].done.audio_duration_ms
    fast = (await collect(stub, text="Manao ahoana", speed=2.0, voice="mlg-1"))[-1].done
    assert fast.audio_duration_ms == pytest.approx(normal / 2, abs=1)
    assert engine.calls[-1][1:3] == ("mlg-1", 2.0)


async def test_pauses_separate_sentences() -> None:
    engine = FakeEngine()
    h = ServiceHost(make_service(settings(sentence_pause_ms=300), engine=engine), settings())
    await h.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") as ch:
            stub = tts_pb2_grpc.TtsStub(ch)
            replies = await collect(stub, text="Eny. Tsia.")
    finally:
        await h.stop(grace=0)
    assert replies[-1].done.audio_duration_ms == pytest.approx(7 * MS_PER_CHAR + 300, abs=1)


async def test_wav_output_starts_with_a_streaming_header(stub) -> None:
    replies = await collect(
        stub, text=TEXT, encoding=audio_pb2.AUDIO_ENCODING_WAV, sample_rate_hz=24000
    )
    assert replies[0].format.encoding == audio_pb2.AUDIO_ENCODING_WAV
    data = audio_of(replies)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", data[24:28])[0] == 24000
    samples = (len(data) - 44) // 2
    assert samples == pytest.approx(replies[-1].done.audio_duration_ms * 24, abs=3)


async def test_float_output(stub) -> None:
    replies = await collect(stub, text="Eny", encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE)
    data = audio_of(replies)
    values = np.frombuffer(data, dtype="<f4")
    assert len(values) == 3 * MS_PER_CHAR * RATE // 1000
    assert np.all(np.abs(values) <= 1.0)


async def test_unsayable_characters_are_dropped_and_counted(stub) -> None:
    before = REGISTRY.get_sample_value("milo_tts_dropped_characters_total") or 0
    replies = await collect(stub, text="Manao 🙂 ahoana ☺!")
    assert replies[-1].done.dropped_characters == 2
    assert [r.sentence.normalized_text for r in replies if r.HasField("sentence")] == [
        "manao ahoana"
    ]
    after = REGISTRY.get_sample_value("milo_tts_dropped_characters_total")
    assert after == before + 2


@pytest.mark.parametrize(
    ("request_kw", "expected"),
    [
        (dict(text=""), "text is empty"),
        (dict(text="  \n "), "text is empty"),
        (dict(text="🙂 ☺ 中文"), "none of the 4 characters"),
        (dict(text="... !? —"), "no words, only punctuation"),
        (dict(text="Manao", voice="rakoto"), "unknown voice 'rakoto'; voices: mlg, mlg-1"),
        (dict(text="Manao", sample_rate_hz=12345), "sample rate 12345 Hz is not supported"),
        (dict(text="Manao", speed=3.0), "speed 3 is out of range"),
        (dict(text="Manao", speed=0.0), "speed 0 is out of range"),
        (dict(text="a" * 6001), "text is 6001 characters long; the limit is 6000"),
        (
            dict(text="Manao", encoding=audio_pb2.AUDIO_ENCODING_CONTAINER),
            "encoding AUDIO_ENCODING_CONTAINER is not an output encoding",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_and_service_stays_serving(
    stub, engine, request_kw: dict, expected: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(stub, **request_kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.value.details()
    assert engine.calls == []  # refused before any synthesis
    assert await serving(stub) == Status.SERVING
    assert (await collect(stub, text="Eny"))[-1].done.sentences == 1


async def test_5000_characters_are_synthesized(stub) -> None:
    text = "Ny fiteny malagasy dia ampiasain'ny olona 20 tapitrisa, any Madagasikara. " * 68
    assert 5000 <= len(text) <= 6000
    replies = await collect(stub, text=text)
    assert replies[-1].done.sentences == 68
    chunks = [r.audio for r in replies if r.HasField("audio")]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.duration_ms <= 200 for c in chunks)


async def test_client_cancel_stops_synthesis(host, stub, engine) -> None:
    engine.hold_on = "faharoa"
    text = "Fehezanteny voalohany. Fehezanteny faharoa. Fehezanteny fahatelo. Farany."
    call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=text))
    while (await call.read()).WhichOneof("event") != "audio":
        pass  # the first sentence is out; the engine is now held on the second one
    await asyncio.to_thread(engine.holding.wait, 10)
    call.cancel()
    # the handler has exited, so its producer is cancelled, before the engine is released
    async with asyncio.timeout(10):
        await until(lambda: host.admission.active == 0)
    engine.release.set()
    assert (await collect(stub, text="Eny"))[-1].done.sentences == 1
    spoken = [c[0] for c in engine.calls]
    assert spoken == ["fehezanteny voalohany", "fehezanteny faharoa", "eny"]
