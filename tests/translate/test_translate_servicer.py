"""Tier 2: the Translator servicer on a real ServiceHost (port 0) over a fake engine.

The fake engine "translates" by reversing each sentence and prefixing the target code, so
every output names its input; it can be held inside a batch (a threading.Event) so tests
can queue callers behind it without timing guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from milo.translate.v1 import translate_pb2 as pb
from milo.translate.v1 import translate_pb2_grpc as pb_grpc
from services.runtime.model_service import ModelService
from services.runtime.server import ServiceHost
from services.translate.config import TranslateSettings
from services.translate.engine import Job, Output
from services.translate.service import make_service

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from procs import wait_until

SERVICE = "milo.translate.v1.Translator"


class FakeEngine:
    model_id, device, compute_type = "fake-nllb", "cpu", "float32"

    def __init__(self) -> None:
        self.calls: list[tuple[list[Job], int]] = []
        self.release = threading.Event()
        self.release.set()
        self.fail = False
        self.closed = False

    def language_codes(self) -> frozenset[str]:
        return frozenset({"plt_Latn", "fra_Latn", "eng_Latn", "madeupword0"})

    def translate(self, jobs: Sequence[Job], beam_size: int) -> list[Output]:
        self.calls.append((list(jobs), beam_size))
        assert self.release.wait(timeout=30), "test never released the engine"
        if self.fail or any("BOOM" in j.text for j in jobs):
            raise RuntimeError("engine exploded: secret detail")
        return [Output(expected(j.text, j.target), len(j.text), len(j.text)) for j in jobs]

    def load(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def expected(text: str, target: str = "fra_Latn") -> str:
    return f"{target}:{text[::-1]}"


@dataclass
class Served:
    host: ServiceHost
    service: ModelService
    engine: FakeEngine
    stub: pb_grpc.TranslatorStub
    channel: grpc.aio.Channel

    async def translate(
        self, *texts: str, src: str = "mg", tgt: str = "fr", **kw: int
    ) -> pb.TranslateResponse:
        request = pb.TranslateRequest(texts=texts, source_language=src, target_language=tgt, **kw)
        return await self.stub.Translate(request)

    async def serving(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    @property
    def queued(self) -> int:
        return self.service.core.batcher.queued


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[Served]:
    async with serve(tmp_path) as s:
        yield s


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, **overrides) -> AsyncIterator[Served]:
    settings = TranslateSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        model_dir=tmp_path,
        **overrides,
    )
    engine = FakeEngine()
    service = make_service(settings, engine=engine)
    host = ServiceHost(service, settings)
    await host.start()
    engine.calls.clear()  # forget the warm-up
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        yield Served(host, service, engine, pb_grpc.TranslatorStub(channel), channel)
    await host.stop(grace=0)
    assert engine.closed


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


# --- results ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 32])
async def test_one_output_per_input_in_order(served, count):
    texts = [f"Fehezanteny {i}." for i in range(count)]
    reply = await served.translate(*texts)
    assert [t.text for t in reply.translations] == [expected(t) for t in texts]
    assert [t.input_tokens for t in reply.translations] == [len(t) for t in texts]
    assert (reply.source_model_code, reply.target_model_code) == ("plt_Latn", "fra_Latn")
    assert reply.processing_ms > 0 and reply.queue_ms >= 0
    assert len(served.engine.calls) == 1  # one engine call for the whole request


async def test_paragraphs_are_split_into_sentences_and_joined_back(served):
    text = "Salama. Manao ahoana?\n\nTsara aho.\n"
    reply = await served.translate(text, src="mg", tgt="en")
    assert reply.translations[0].text == (
        f"{expected('Salama.', 'eng_Latn')} {expected('Manao ahoana?', 'eng_Latn')}\n\n"
        f"{expected('Tsara aho.', 'eng_Latn')}\n"
    )
    [(jobs, _)] = served.engine.calls
    assert [j.text for j in jobs] == ["Salama.", "Manao ahoana?", "Tsara aho."]


async def test_empty_strings_come_back_empty_without_the_engine(served):
    reply = await served.translate("", "  \n", "Eny.")
    assert [t.text for t in reply.translations] == ["", "  \n", expected("Eny.")]
    assert [[j.text for j in jobs] for jobs, _ in served.engine.calls] == [["Eny."]]
    reply = await served.translate("", "")
    assert [t.text for t in reply.translations] == ["", ""] and len(served.engine.calls) == 1


async def test_beam_size_defaults_to_the_server_and_can_be_asked(served, tmp_path):
    await served.translate("Eny.")
    await served.translate("Tsia.", beam_size=4)
    assert [beam for _, beam in served.engine.calls] == [1, 4]  # 1 on CPU by default
    async with serve(tmp_path, beam_size=3) as configured:
        await configured.translate("Eny.")
        assert [beam for _, beam in configured.engine.calls] == [3]


async def test_repeated_phrases_hit_the_cache_and_duplicates_are_translated_once(served):
    hits = REGISTRY.get_sample_value("milo_translate_cache_lookups_total", {"result": "hit"}) or 0
    first = await served.translate("Salama.", "Salama.", "Veloma.")
    again = await served.translate("Salama.")
    assert [t.text for t in first.translations] == [expected("Salama.")] * 2 + [expected("Veloma.")]
    assert again.translations[0].text == expected("Salama.")
    assert [[j.text for j in jobs] for jobs, _ in served.engine.calls] == [["Salama.", "Veloma."]]
    after = REGISTRY.get_sample_value("milo_translate_cache_lookups_total", {"result": "hit"})
    assert after == hits + 1


# --- batching -----------------------------------------------------------------------------


async def test_concurrent_callers_share_one_engine_call_and_get_their_own_results(served):
    engine = served.engine
    count_before = metric("milo_translate_batch_sentences_count")
    sum_before = metric("milo_translate_batch_sentences_sum")
    engine.release.clear()
    first = asyncio.ensure_future(served.translate("Voalohany."))
    await wait_until(lambda: len(engine.calls) == 1)
    texts = [f"Mpanjifa {i}. Fehezanteny faharoa {i}." for i in range(8)]
    calls = [
        asyncio.ensure_future(served.translate(t, tgt=("fr", "en")[i % 2]))
        for i, t in enumerate(texts)
    ]
    await wait_until(lambda: served.queued == 16)
    engine.release.set()
    replies = await asyncio.gather(*calls)
    assert (await first).translations[0].text == expected("Voalohany.")
    for i, (text, reply) in enumerate(zip(texts, replies, strict=True)):
        code = ("fra_Latn", "eng_Latn")[i % 2]
        one, two = text.split(". ")
        assert reply.translations[0].text == f"{expected(one + '.', code)} {expected(two, code)}"
    assert [len(jobs) for jobs, _ in engine.calls] == [1, 16]  # eight callers, one call
    assert metric("milo_translate_batch_sentences_count") == count_before + 2
    assert metric("milo_translate_batch_sentences_sum") == sum_before + 17


async def test_after_a_call_its_callers_are_awaited_so_cohorts_merge(tmp_path):
    async with serve(tmp_path, batch_window_ms=1000) as served:  # bounds the wait
        engine = served.engine
        engine.release.clear()
        first = asyncio.ensure_future(served.translate("A1."))
        await wait_until(lambda: len(engine.calls) == 1)
        other = asyncio.ensure_future(served.translate("B1."))
        await wait_until(lambda: served.queued == 1)
        engine.release.set()
        await first  # B1 now waits for A's caller to come back rather than go alone
        assert len(engine.calls) == 1 and served.queued == 1
        again = await asyncio.wait_for(served.translate("A2."), 5)
        assert again.translations[0].text == expected("A2.")
        assert (await other).translations[0].text == expected("B1.")
        assert [[j.text for j in jobs] for jobs, _ in engine.calls] == [["A1."], ["B1.", "A2."]]


async def test_a_lone_caller_never_waits_for_the_window(tmp_path):
    async with serve(tmp_path, batch_window_ms=1000) as served:
        for i in range(5):  # a conversation: one sentence after the other
            reply = await asyncio.wait_for(served.translate(f"Fehezanteny {i}."), 5)
            assert reply.queue_ms < 500


async def test_engine_batches_never_exceed_the_maximum(tmp_path):
    async with serve(tmp_path, max_engine_batch=16) as served:
        texts = [f"Fehezanteny {i}." for i in range(40)]
        reply = await served.translate(" ".join(texts))
        assert reply.translations[0].text == " ".join(expected(t) for t in texts)
        assert [len(jobs) for jobs, _ in served.engine.calls] == [16, 16, 8]


async def test_different_beam_sizes_go_in_separate_engine_calls(served):
    engine = served.engine
    engine.release.clear()
    first = asyncio.ensure_future(served.translate("Voalohany."))
    await wait_until(lambda: len(engine.calls) == 1)
    calls = [
        asyncio.ensure_future(served.translate(f"T{i}.", beam_size=2 + i % 2)) for i in range(4)
    ]
    await wait_until(lambda: served.queued == 4)
    engine.release.set()
    await asyncio.gather(first, *calls)
    assert sorted((beam, len(jobs)) for jobs, beam in engine.calls[1:]) == [(2, 2), (3, 2)]


async def test_a_cancelled_caller_leaves_the_batch_and_the_others_get_their_results(served):
    engine = served.engine
    engine.release.clear()
    running = served.stub.Translate(
        pb.TranslateRequest(texts=["Mandeha."], source_language="mg", target_language="fr")
    )
    await wait_until(lambda: len(engine.calls) == 1)
    waiting = [asyncio.ensure_future(served.translate(f"Miandry {i}.")) for i in range(3)]
    gone = served.stub.Translate(
        pb.TranslateRequest(texts=["Lasa."], source_language="mg", target_language="fr")
    )
    await wait_until(lambda: served.queued == 4)
    gone.cancel()
    running.cancel()  # its batch is already in the engine: its result is dropped
    await wait_until(lambda: served.queued == 3)
    engine.release.set()
    replies = await asyncio.gather(*waiting)
    texts = [f"Miandry {i}." for i in range(3)]
    assert [r.translations[0].text for r in replies] == [expected(t) for t in texts]
    assert [j.text for j in engine.calls[1][0]] == texts  # the cancelled caller left
    for call in (gone, running):
        with pytest.raises(asyncio.CancelledError):
            await call
    assert (await served.translate("Aorian'izay.")).translations[0].text == expected("Aorian'izay.")
    assert await served.serving()


async def test_an_engine_failure_is_internal_for_its_batch_only(served):
    served.engine.fail = True
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await served.translate("Eny.")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (err.value.details() or "")
    served.engine.fail = False
    assert (await served.translate("Eny.")).translations[0].text == expected("Eny.")
    assert await served.serving()


@pytest.mark.parametrize("others", [1, 3, 15])
@pytest.mark.parametrize(("src", "tgt"), [("mg", "fr"), ("fr", "mg")])
async def test_one_callers_failing_sentence_never_fails_the_callers_batched_with_it(
    served, others, src, tgt
):
    engine = served.engine
    engine.release.clear()
    first = asyncio.ensure_future(served.translate("Voalohany.", src=src, tgt=tgt))
    await wait_until(lambda: len(engine.calls) == 1)
    texts = [f"Mpanjifa {i}." for i in range(others)]
    bad = asyncio.ensure_future(served.translate("BOOM.", "Tsara.", src=src, tgt=tgt))
    good = [asyncio.ensure_future(served.translate(t, src=src, tgt=tgt)) for t in texts]
    await wait_until(lambda: served.queued == others + 2)
    engine.release.set()
    await first
    code = "fra_Latn" if tgt == "fr" else "plt_Latn"
    replies = await asyncio.gather(*good)
    assert [r.translations[0].text for r in replies] == [expected(t, code) for t in texts]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bad
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert len(engine.calls[1][0]) == others + 2  # they were batched together, then retried
    assert await served.serving()


async def test_segments_with_nothing_to_translate_come_back_unchanged(served):
    texts = ["...", "?", "😀", "42", "Salama... Veloma!", "Eny. 42. ?"]
    reply = await served.translate(*texts)
    assert [t.text for t in reply.translations] == [
        "...",
        "?",
        "😀",
        "42",
        f"{expected('Salama...')} {expected('Veloma!')}",
        f"{expected('Eny.')} 42. ?",
    ]
    sent = [j.text for jobs, _ in served.engine.calls for j in jobs]
    assert sorted(sent) == ["Eny.", "Salama...", "Veloma!"]
    assert reply.translations[0].input_tokens == 0 and not reply.translations[0].truncated


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kw", "message"),
    [
        ({"texts": []}, "texts is empty"),
        (
            {"texts": ["a"], "source_language": "xx"},
            "source_language 'xx' is not supported: use one of mg (plt_Latn), fr (fra_Latn), en",
        ),
        ({"texts": ["a"], "target_language": "de"}, "target_language 'de' is not supported"),
        ({"texts": ["a"], "target_language": ""}, "target_language is empty"),
        ({"texts": ["a"], "target_language": "mg"}, "both mg"),
        ({"texts": ["a" * 5001]}, "texts[0] is 5001 characters long, the limit is 5000"),
        ({"texts": ["a"] * 65}, "too many texts: 65 in one request, the limit is 64"),
        ({"texts": ["a"], "beam_size": 0}, "beam_size 0 is out of range: use 1 to 8"),
        ({"texts": ["a"], "beam_size": 9}, "beam_size 9 is out of range"),
    ],
)
async def test_bad_input_is_invalid_argument_and_the_service_stays_serving(
    served, request_kw, message
):
    fields = {"source_language": "mg", "target_language": "fr", **request_kw}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await served.stub.Translate(pb.TranslateRequest(**fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")
    assert served.engine.calls == []
    assert await served.serving()
    assert (await served.translate("Eny.")).translations[0].text == expected("Eny.")


async def test_describe_lists_languages_pairs_and_limits(served):
    reply = await served.stub.Describe(pb.DescribeRequest())
    assert reply.model_id == "fake-nllb" and reply.device == "cpu"
    assert [(lang.code, lang.model_code, lang.name) for lang in reply.languages] == [
        ("mg", "plt_Latn", "Malagasy"),
        ("fr", "fra_Latn", "French"),
        ("en", "eng_Latn", "English"),
    ]
    assert len(reply.pairs) == 6 and pb.LanguagePair(source="mg", target="fr") in reply.pairs
    assert (reply.max_batch_texts, reply.max_text_chars) == (64, 5000)
    assert (reply.batch_window_ms, reply.max_engine_batch) == (5, 32)
