"""Batched decoding across streams: the scheduler's batching policy (tier 1, fake batch
runner) and the real engine's batch against lone decodes (the demo tiny.en model)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from services.stt.batching import BatchPolicy
from services.stt.scheduler import DecodeScheduler

sys.path.insert(0, str(Path(__file__).parent))


class Recorder:
    """A batch runner that returns each item's name upper-cased and records the batches;
    an item named "bad" fails alone."""

    def __init__(self) -> None:
        self.batches: list[tuple[object, list[str]]] = []

    def __call__(self, group, items):
        self.batches.append((group, list(items)))
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


HELD: set[asyncio.Future] = set()  # the holding jobs, referenced until they end


async def hold(scheduler: DecodeScheduler) -> threading.Event:
    """Occupy the (one) decode worker until the returned event is set."""
    gate, running = threading.Event(), threading.Event()
    HELD.add(asyncio.ensure_future(scheduler.run(lambda: running.set() or gate.wait(10))))
    assert await asyncio.to_thread(running.wait, 10)
    return gate


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_policy_goes_at_once_when_full_alone_or_without_window_else_waits_the_rest():
    policy = BatchPolicy(max_batch=4, window_s=0.01)
    assert policy.wait_s(4, 0.0, other_callers=3) == 0  # full
    assert policy.wait_s(1, 0.0, other_callers=0) == 0  # nobody else could come
    assert policy.wait_s(2, 0.004, other_callers=1) == pytest.approx(0.006)
    assert policy.wait_s(2, 0.02, other_callers=1) == 0  # the window is over
    assert BatchPolicy(window_s=0).wait_s(1, 0.0, other_callers=5) == 0


async def test_finals_waiting_together_leave_as_one_batch_each_with_its_own_result():
    runner = Recorder()
    scheduler = DecodeScheduler(1, runner, BatchPolicy(max_batch=8, window_s=0))
    gate = await hold(scheduler)
    calls = [
        asyncio.ensure_future(scheduler.run_batched("en", name)) for name in ("a", "b", "bad", "d")
    ]
    partial = asyncio.ensure_future(scheduler.run_latest("s", lambda: "partial"))
    await settle()
    gate.set()
    results = await asyncio.gather(*calls, partial, return_exceptions=True)
    assert results[:2] == ["A", "B"] and results[3:] == ["D", "partial"]
    assert isinstance(results[2], ValueError)  # only its own caller fails
    assert runner.batches == [("en", ["a", "b", "bad", "d"])]
    scheduler.close()


async def test_batches_hold_one_group_oldest_first_and_at_most_max_batch():
    runner = Recorder()
    scheduler = DecodeScheduler(1, runner, BatchPolicy(max_batch=2, window_s=0))
    gate = await hold(scheduler)
    calls = [
        asyncio.ensure_future(scheduler.run_batched(group, name))
        for group, name in (("en", "a"), ("fr", "b"), ("en", "c"), ("en", "d"))
    ]
    await settle()
    gate.set()
    assert await asyncio.gather(*calls) == ["A", "B", "C", "D"]
    assert runner.batches == [("en", ["a", "c"]), ("fr", ["b"]), ("en", ["d"])]
    scheduler.close()


async def test_a_free_model_waits_for_open_streams_but_not_for_a_lone_caller():
    runner = Recorder()
    callers = [1]
    scheduler = DecodeScheduler(
        1, runner, BatchPolicy(max_batch=3, window_s=60), callers=lambda: callers[0]
    )
    assert await scheduler.run_batched("en", "lone") == "LONE"  # no company: at once
    callers[0] = 3
    first = asyncio.ensure_future(scheduler.run_batched("en", "a"))
    partial = asyncio.ensure_future(scheduler.run_latest("s", lambda: "partial"))
    await settle()
    assert scheduler.busy == 0 and len(runner.batches) == 1  # held for company, partial too
    rest = [asyncio.ensure_future(scheduler.run_batched("en", n)) for n in ("b", "c")]
    assert await asyncio.gather(first, *rest) == ["A", "B", "C"]  # full: gone at once
    assert await partial == "partial"
    assert runner.batches[1] == ("en", ["a", "b", "c"])
    scheduler.close()


async def test_a_cancelled_caller_leaves_the_batch_without_touching_the_others():
    runner = Recorder()
    scheduler = DecodeScheduler(1, runner, BatchPolicy(window_s=0))
    gate = await hold(scheduler)
    gone = asyncio.ensure_future(scheduler.run_batched("en", "gone"))
    kept = asyncio.ensure_future(scheduler.run_batched("en", "kept"))
    await settle()
    gone.cancel()
    await settle()
    gate.set()
    assert await kept == "KEPT"
    assert runner.batches == [("en", ["kept"])]
    scheduler.close()


# -- the real engine: the demo tiny.en model, espeak-ng speech ------------------------------

SENTENCES = [
    "Please turn on the lights in the kitchen.",
    "What is the weather like today?",
    "Thank you very much for your help.",
    "My name is John and I live in London.",
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[np.ndarray]:
    from stt_support import need_tools, raw, speak

    need_tools()
    folder = tmp_path_factory.mktemp("batch")
    pcm = [raw(speak(text, folder / f"{i}.wav"), 16_000) for i, text in enumerate(SENTENCES)]
    return [np.frombuffer(p, "<i2").astype(np.float32) / 32768 for p in pcm]


@pytest.fixture(scope="module")
def core(demo_models):
    from services.stt.core import Defaults, SttCore
    from services.stt.vad import SileroDetector
    from services.stt.whisper_engine import WhisperConfig, WhisperEngine

    engine = WhisperEngine(WhisperConfig(demo_models / "stt", device="cpu"))
    core = SttCore(
        engine, SileroDetector, Defaults(language="en"), batching=BatchPolicy(window_s=0)
    )
    core.load()
    yield core
    core.close()


@pytest.fixture(scope="module")
def engine(core):
    return core.engine


def words(transcript):
    return [(w.word, w.start, w.end) for s in transcript.segments for w in s.words]


def test_engine_batch_equals_each_clip_decoded_alone(engine, speech):
    from services.stt.engine import DecodeOptions

    options = DecodeOptions(language="en", beam_size=5)
    silence = np.zeros(16_000, np.float32)
    clips = [speech[0], silence, speech[1], speech[2]]
    alone = [engine.transcribe(clip, options) for clip in clips]
    batch = engine.transcribe_batch(clips, options)
    assert [t.text for t in batch] == [t.text for t in alone]
    assert [words(t) for t in batch] == [words(t) for t in alone]
    assert [bool(t.text) for t in batch] == [True, False, True, True]
    greedy = DecodeOptions(language="en", beam_size=1, word_timestamps=False, best_effort=True)
    assert [t.text for t in engine.transcribe_batch(speech[3:1:-1], greedy)] == [
        engine.transcribe(clip, greedy).text for clip in speech[3:1:-1]
    ]


def batches_of_four_or_more() -> float:
    from prometheus_client import REGISTRY

    count = REGISTRY.get_sample_value("milo_stt_batch_size_count") or 0.0
    return count - (REGISTRY.get_sample_value("milo_stt_batch_size_bucket", {"le": "3.0"}) or 0.0)


async def test_four_streams_ending_together_give_the_finals_of_each_run_alone(core, speech):
    from services.stt.audio import AudioSpec
    from services.stt.core import RequestOptions
    from services.stt.stream import Result, run_stream

    tail = np.zeros(16_000, np.float32)
    pcm = [(np.concatenate([clip, tail]) * 32767).astype("<i2").tobytes() for clip in speech]

    async def finals(data: bytes) -> list[tuple]:
        session = core.open_stream(
            AudioSpec("s16le", 16_000, 1),
            RequestOptions(),
            core.defaults.vad,
            partials=False,
            partial_interval_ms=1000,
        )

        async def chunks():
            for i in range(0, len(data), 3200):
                yield data[i : i + 3200]

        out = []
        async for emitted in run_stream(session, chunks()):
            event = emitted.event
            if isinstance(event, Result) and event.is_final:
                out.append(
                    (
                        event.index,
                        event.transcript.text,
                        words(event.transcript),
                        event.start,
                        event.end,
                    )
                )
        return out

    alone = [await finals(data) for data in pcm]
    before = batches_of_four_or_more()
    gate = await hold(core.scheduler)  # the model is busy: the four finals queue up
    streams = [asyncio.ensure_future(finals(data)) for data in pcm]
    async with asyncio.timeout(60):
        for _ in itertools.count():  # the four finals are queued (partials are off)
            if core.scheduler.pending == 4:
                break
            await asyncio.sleep(0.01)
    gate.set()
    together = await asyncio.wait_for(asyncio.gather(*streams), 120)
    assert batches_of_four_or_more() == before + 1
    assert together == alone
    assert [len(f) for f in alone] == [1, 1, 1, 1] and all(f[0][1] for f in alone)
