"""Batched synthesis: the padded VITS batch against lone synthesis (the demo VITS), the
batcher's policy with a fake engine (tier 1), and concurrent requests through the real
service (tier 2 with the demo VITS)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.runtime.server import ServiceHost
from services.tts.batcher import BatchPolicy, SynthesisBatcher
from services.tts.config import TtsSettings
from services.tts.engine import Segment
from services.tts.service import make_service
from services.tts.vits_engine import VitsEngine

TEXTS = [
    "manao ahoana tompoko",
    "misaotra betsaka",
    "veloma",
    "tongasoa eto amin'ny milo ianao ry havana",
]


@pytest.fixture(scope="module")
def vits(demo_models: Path) -> VitsEngine:
    engine = VitsEngine(demo_models / "tts", threads=1)
    engine.load()
    return engine


def test_padded_batch_gives_each_segment_its_lone_samples(vits: VitsEngine) -> None:
    segments = [
        Segment(text, "mlg", speed, seed)
        for text, speed, seed in zip(TEXTS, (1.0, 0.8, 1.5, 1.0), (0, 7, 3, 2**63), strict=True)
    ]
    alone = [vits.synthesize(s.text, s.voice, s.speed, s.seed) for s in segments]
    batch = vits.synthesize_batch(segments)
    assert [len(b) for b in batch] == [len(a) for a in alone]
    for a, b in zip(alone, batch, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)
    reordered = vits.synthesize_batch(segments[::-1])[::-1]
    for a, b in zip(alone, reordered, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)


def test_lone_synthesis_matches_transformers_forward_on_cpu(vits: VitsEngine) -> None:
    """The per-item generator draws the noise a seeded lone VitsModel forward draws."""
    import torch

    model, tokenizer = vits._model, vits._tokenizer
    with torch.inference_mode():
        torch.manual_seed(11)
        ids = tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
        reference = model(input_ids=ids, speaking_rate=0.9).waveform[0].numpy()
    ours = vits.synthesize(TEXTS[0], "mlg", 0.9, 11)
    assert len(ours) == len(reference)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


class BatchFake:
    """Records batches; each segment's samples encode (seed, text length); a gate holds
    the next call."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.batches: list[list[Segment]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()

    def synthesize(self, text: str, voice: str, speed: float, seed: int) -> np.ndarray:
        return self.synthesize_batch([Segment(text, voice, speed, seed)])[0]

    def synthesize_batch(self, segments: Sequence[Segment]) -> list[np.ndarray]:
        self.running.set()
        self.gate.wait(10)
        self.batches.append(list(segments))
        if any(s.text == "bad" for s in segments):
            raise ValueError("bad segment")
        return [np.full(len(s.text), s.seed, np.float32) for s in segments]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_share_calls_one_segment_each_in_order_and_none_starves() -> None:
    fake = BatchFake()
    batcher = SynthesisBatcher(fake, BatchPolicy(max_batch=2, window_s=60))  # type: ignore[arg-type]
    callers = [batcher.join() for _ in range(3)]

    async def speak(n: int) -> list[float]:
        out = []
        for k in range(3):
            samples = await callers[n].synthesize(Segment("x" * (k + 1), "mlg", 1.0, n))
            out.append((float(samples[0]), len(samples)))
        callers[n].close()
        return out

    results = await asyncio.wait_for(asyncio.gather(*(speak(n) for n in range(3))), 30)
    assert results == [[(n, 1), (n, 2), (n, 3)] for n in range(3)]
    for batch in fake.batches:  # one segment per caller per call, never more than 2
        assert 1 <= len(batch) <= 2 and len({s.seed for s in batch}) == len(batch)
    assert len(fake.batches) == 5  # 9 segments in calls of 2 (the last one alone)
    batcher.stop_threadsafe()


async def test_a_lone_caller_never_waits_and_a_bad_segment_fails_only_its_caller() -> None:
    fake = BatchFake()
    batcher = SynthesisBatcher(fake, BatchPolicy(max_batch=8, window_s=60))  # type: ignore[arg-type]
    lone = batcher.join()
    assert len(await asyncio.wait_for(lone.synthesize(Segment("abc", "mlg", 1.0, 1)), 10)) == 3
    fake.gate.clear()
    fake.running.clear()
    first = asyncio.ensure_future(lone.synthesize(Segment("hold", "mlg", 1.0, 1)))
    assert await asyncio.wait_for(asyncio.to_thread(fake.running.wait, 10), 10)
    other = batcher.join()  # (joined earlier, the batcher would have waited for it)
    good = asyncio.ensure_future(lone.synthesize(Segment("good", "mlg", 1.0, 2)))
    bad = asyncio.ensure_future(other.synthesize(Segment("bad", "mlg", 1.0, 3)))
    await settle()
    fake.gate.set()
    await first
    assert len(await asyncio.wait_for(good, 10)) == 4
    with pytest.raises(ValueError, match="bad segment"):
        await asyncio.wait_for(bad, 10)
    assert [s.text for s in fake.batches[2]] == ["good", "bad"]  # tried together, then alone
    batcher.stop_threadsafe()


# -- through the service: concurrent requests against each alone ----------------------------

REQUESTS = [
    ("Manao ahoana tompoko. Tongasoa eto amin'ny Milo.", 0),
    ("Misaotra betsaka. Veloma e!", 5),
    ("Ny toetr'andro dia mafana androany.", 9),
    ("Eny, azo atao izany. Andao ho any an-tsena.", 2),
]


async def synthesize(stub: tts_pb2_grpc.TtsStub, text: str, seed: int) -> tuple[bytes, list[int]]:
    request = tts_pb2.SynthesizeRequest(text=text, seed=seed)
    audio, indexes = b"", []
    async for reply in stub.Synthesize(request):
        if reply.HasField("audio"):
            audio += reply.audio.data
            indexes.append(reply.audio.index)
    return audio, indexes


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a server-side condition (checked every 5 ms); callers set a deadline."""
    for _ in itertools.count():
        if condition():
            return
        await asyncio.sleep(0.005)


def batches_of_more_than_one() -> float:
    count = REGISTRY.get_sample_value("milo_tts_batch_size_count") or 0.0
    return count - (REGISTRY.get_sample_value("milo_tts_batch_size_bucket", {"le": "1.0"}) or 0.0)


async def test_concurrent_requests_get_their_lone_audio_in_order(demo_models: Path) -> None:
    settings = TtsSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        model_dir=demo_models / "tts",
        threads=1,
        batch_window_ms=50,
    )
    engine = VitsEngine(demo_models / "tts", threads=1)
    service = make_service(settings, engine)
    host = ServiceHost(service, settings)
    await host.start()
    batcher = service.core.batcher
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            stub = tts_pb2_grpc.TtsStub(channel)
            alone = [await synthesize(stub, text, seed) for text, seed in REQUESTS]
            before = batches_of_more_than_one()
            with engine._lock:  # the model is busy: the first segments queue up together
                calls = [asyncio.ensure_future(synthesize(stub, *REQUESTS[0]))]
                await asyncio.wait_for(until(lambda: batcher.in_flight == 1), 30)
                calls += [asyncio.ensure_future(synthesize(stub, *r)) for r in REQUESTS[1:]]
                await asyncio.wait_for(until(lambda: batcher.waiting == 3), 30)
            together = await asyncio.wait_for(asyncio.gather(*calls), 120)
            assert batches_of_more_than_one() > before
    finally:
        await host.stop(grace=0)
    for (solo, _), (mixed, indexes) in zip(alone, together, strict=True):
        assert indexes == list(range(len(indexes)))
        a, b = (np.frombuffer(x, "<i2").astype(np.int32) for x in (solo, mixed))
        assert len(a) == len(b)
        assert np.max(np.abs(a - b)) <= 4  # s16 steps: float differences of ~1e-4 at most
