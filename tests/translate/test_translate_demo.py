"""Tier 3: the translate service with the real engine (CTranslate2 + SentencePiece) on the
random-weight NLLB-architecture demo model: the engine in process, then the whole service
in its own process, as `python -m services.translate` runs it.

Random weights never emit </s> on their own, so every output here is a runaway that the
length guard (or the loop trimmer) must stop.
"""

from __future__ import annotations

import asyncio
import re
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.translate.v1 import translate_pb2 as pb
from milo.translate.v1 import translate_pb2_grpc as pb_grpc
from services.models.demo_corpus import corpus_sentences
from services.translate.ct2_engine import Ct2Engine, EngineConfig
from services.translate.engine import Job
from services.translate.guards import LengthLimit
from services.translate.languages import lookup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from procs import ServiceProcess

SERVICE = "milo.translate.v1.Translator"
TEXTS = corpus_sentences()[:32]  # distinct inputs give (mostly) distinct random outputs


@pytest.fixture(scope="module")
def model_dir(demo_models: Path) -> Path:
    return demo_models / "translate"


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Ct2Engine:
    mg_fr_en = tuple(lookup(code) for code in ("mg", "fr", "en"))
    engine = Ct2Engine(EngineConfig(model_dir, threads=1, restrict_to=mg_fr_en))  # type: ignore[arg-type]
    engine.load()
    return engine


def jobs(texts: list[str]) -> list[Job]:
    return [Job(text, "plt_Latn", "fra_Latn") for text in texts]


# --- the engine in process ----------------------------------------------------------------


def test_engine_reads_the_model_languages_and_restricts_the_output_vocabulary(engine):
    assert {"plt_Latn", "fra_Latn", "eng_Latn"} <= engine.language_codes()
    assert engine.model_id == "milo-demo/nllb-tiny-random"  # from manifest.json
    assert engine.restricted and engine.output_vocab_size < engine.vocab_size


def test_a_batch_gives_what_each_sentence_gives_alone(engine):
    batch = engine.translate(jobs(TEXTS), beam_size=2)
    alone = [engine.translate(jobs([text]), beam_size=2)[0] for text in TEXTS]
    assert batch == alone
    assert len({o.text for o in batch}) > len(TEXTS) // 2  # outputs do tell inputs apart


def test_batches_in_both_directions_one_after_the_other(engine):
    """Regression: with the output vocabulary restricted, an fr->mg call after a mixed one
    failed inside CTranslate2 (vector::_M_range_check), until the target codes were put
    in the vocabulary map. Found by the load test."""
    mg, fr = "plt_Latn", "fra_Latn"
    mixed = [
        Job("Aiza ny tsena akaiky indrindra?", mg, fr),
        Job("Le marché ouvre à six heures du matin.", fr, mg),
        Job("Te hividy vary sy trondro aho anio.", mg, fr),
        Job("Je voudrais réserver une chambre pour deux nuits.", fr, mg),
    ]
    to_mg = [
        Job(text, fr, mg)
        for text in (
            "Mon fils est malade, nous cherchons un médecin.",
            "Je voudrais réserver une chambre pour deux nuits.",
            "Où se trouve la gare routière ?",
        )
    ]
    for batch in (mixed, to_mg, mixed[:2], to_mg[:2], [mixed[0]], to_mg):
        assert len(engine.translate(batch, beam_size=1)) == len(batch)


def test_the_length_guard_stops_a_runaway_model(model_dir):
    short = Ct2Engine(
        EngineConfig(model_dir, threads=1, length=LengthLimit(0.5, 1), no_repeat_ngram_size=0)
    )
    short.load()
    outputs = short.translate(jobs(TEXTS), beam_size=1)
    for output in outputs:
        assert output.truncated
        assert 0 < output.output_tokens <= LengthLimit(0.5, 1).max_output(output.input_tokens)


def test_the_length_limit_is_read_from_the_model(engine):
    assert engine.max_positions == 512  # the demo model's position table
    assert (engine.max_input_tokens, engine.max_decoding) == (256, 510)


@pytest.mark.parametrize("letters", [251, 600, 2000])
@pytest.mark.parametrize(("source", "target"), [("plt_Latn", "fra_Latn"), ("fra_Latn", "plt_Latn")])
def test_an_unbroken_run_past_the_model_limit_is_translated_in_windows(
    engine, letters, source, target
):
    """Regression: 251 letters with no space made CTranslate2 ask for position 512 and fail
    the whole batch ("No position encodings are defined for positions >= 512")."""
    batch = [Job("a" * letters, source, target), *jobs(TEXTS[:3])]
    outputs = engine.translate(batch, beam_size=2)
    assert len(outputs) == 4 and outputs[0].input_tokens >= letters // 2
    assert outputs[1:] == engine.translate(jobs(TEXTS[:3]), beam_size=2)


# --- the service in its own process -------------------------------------------------------


@pytest.fixture(scope="module")
def service(model_dir: Path):
    env = {"MILO_TRANSLATE_MODEL_DIR": str(model_dir), "MILO_TRANSLATE_THREADS": "1"}
    with ServiceProcess("services.translate", env, prefix="MILO_TRANSLATE_") as svc:
        yield svc
    assert svc.proc is not None and svc.proc.returncode == 0  # SIGTERM: drained, clean exit


def call(
    service: ServiceProcess, *texts: str, src: str = "mg", tgt: str = "fr", **kw: int
) -> pb.TranslateResponse:
    with grpc.insecure_channel(service.address) as channel:
        request = pb.TranslateRequest(texts=texts, source_language=src, target_language=tgt, **kw)
        return pb_grpc.TranslatorStub(channel).Translate(request, timeout=60)


def serving(service: ServiceProcess) -> bool:
    with grpc.insecure_channel(service.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_describe_names_the_model_languages_and_pairs(service):
    with grpc.insecure_channel(service.address) as channel:
        reply = pb_grpc.TranslatorStub(channel).Describe(pb.DescribeRequest(), timeout=10)
    assert reply.model_id == "milo-demo/nllb-tiny-random" and reply.device == "cpu"
    assert [lang.code for lang in reply.languages][:3] == ["mg", "fr", "en"]
    assert pb.LanguagePair(source="mg", target="fr") in reply.pairs
    assert pb.LanguagePair(source="fr", target="mg") in reply.pairs


@pytest.mark.parametrize("count", [1, 32])
def test_one_output_per_input_in_order_and_guarded(service, count):
    texts = TEXTS[:count]
    batch = call(service, *texts).translations
    assert len(batch) == count
    alone = [call(service, text).translations[0] for text in texts[:8]]
    assert [t.text for t in batch[:8]] == [t.text for t in alone]
    for t in batch:  # the default guard: 2 * input + 10 tokens per sentence
        assert t.truncated and 0 < t.output_tokens <= 2 * t.input_tokens + 10


def test_paragraph_breaks_are_kept(service):
    text = f"{TEXTS[0]} {TEXTS[1]}\n\n{TEXTS[2]}\n{TEXTS[3]}"
    out = call(service, text, src="mg", tgt="en").translations[0].text
    paragraphs = out.split("\n\n")
    assert len(paragraphs) == 2 and paragraphs[1].count("\n") == 1
    assert all(line.strip() for p in paragraphs for line in p.split("\n"))


def test_concurrent_callers_are_batched(service):
    async def burst() -> list[pb.TranslateResponse]:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = pb_grpc.TranslatorStub(channel)
            requests = [
                pb.TranslateRequest(
                    texts=[f"{i} {text}"], source_language="mg", target_language="fr"
                )
                for i, text in enumerate(TEXTS)
            ]
            return await asyncio.gather(*(stub.Translate(r, timeout=60) for r in requests))

    before = batch_sentences(service)
    replies = asyncio.run(burst())
    assert all(len(r.translations) == 1 for r in replies)
    after = batch_sentences(service)
    sentences, calls = after[0] - before[0], after[1] - before[1]
    assert sentences == len(TEXTS) and calls < len(TEXTS)  # some calls carried several


def batch_sentences(service: ServiceProcess) -> tuple[float, float]:
    """(sentences, engine calls) so far, from the service's /metrics."""
    port = re.search(r"metrics on http://[^:]+:(\d+)/metrics", service.log())
    assert port, service.log()
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = dict(re.findall(r"^milo_translate_batch_sentences_(sum|count) (\S+)$", text, re.M))
    return float(values["sum"]), float(values["count"])


@pytest.mark.parametrize(
    ("texts", "fields", "message"),
    [
        ([], {}, "texts is empty"),
        (["a"], {"target_language": "xx"}, "mg (plt_Latn)"),
        (["a" * 5001], {}, "limit is 5000"),
        (["a"], {"beam_size": 99}, "beam_size 99"),
    ],
)
def test_bad_input_is_invalid_argument_and_the_service_stays_serving(
    service, texts, fields, message
):
    request = {"source_language": "mg", "target_language": "fr", **fields}
    with pytest.raises(grpc.RpcError) as err, grpc.insecure_channel(service.address) as channel:
        pb_grpc.TranslatorStub(channel).Translate(pb.TranslateRequest(texts=texts, **request))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert serving(service)
    assert call(service, "", "Salama.").translations[0].text == ""


@pytest.mark.parametrize("callers", [1, 8, 30])
@pytest.mark.parametrize(("src", "tgt"), [("mg", "fr"), ("fr", "mg")])
def test_over_long_inputs_never_fail_the_callers_batched_with_them(service, callers, src, tgt):
    async def burst() -> list[pb.TranslateResponse]:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = pb_grpc.TranslatorStub(channel)
            texts = [("x" * 251 if i % 4 == 0 else TEXTS[i]) for i in range(callers)]
            requests = [
                pb.TranslateRequest(texts=[t], source_language=src, target_language=tgt)
                for t in texts
            ]
            return await asyncio.gather(*(stub.Translate(r, timeout=60) for r in requests))

    replies = asyncio.run(burst())
    assert len(replies) == callers and all(len(r.translations) == 1 for r in replies)


def test_segments_with_nothing_to_translate_pass_through(service):
    texts = ["...", "?", "😀", "42"]
    assert [t.text for t in call(service, *texts).translations] == texts
