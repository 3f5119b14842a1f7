"""Tier 1: the translate service's pure logic (languages, sentences, guards, vocabulary
restriction, batching policy, phrase cache)."""

from __future__ import annotations

import math

import pytest

from services.runtime.errors import InvalidArgument
from services.translate.batcher import BatchPolicy, LastCall, run_isolated
from services.translate.cache import PhraseCache
from services.translate.ct2_engine import input_and_decoding_limits, join_outputs, token_windows
from services.translate.engine import Job, Output
from services.translate.guards import LengthLimit, trim_loop
from services.translate.languages import KNOWN, LanguageCatalog, lookup
from services.translate.text import chop, has_words, segment, split_sentences
from services.translate.vocab import allowed_pieces, write_vmap

MILO_CODES = ["plt_Latn", "fra_Latn", "eng_Latn"]


# --- languages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "model_code"),
    [
        ("mg", "plt_Latn"),
        ("fr", "fra_Latn"),
        ("en", "eng_Latn"),
        ("MG", "plt_Latn"),
        ("fr-FR", "fra_Latn"),
        ("fr_CA", "fra_Latn"),
        (" en ", "eng_Latn"),
        ("plt_Latn", "plt_Latn"),
        ("FRA_LATN", "fra_Latn"),
        ("sw", "swh_Latn"),
        ("zh", "zho_Hans"),
    ],
)
def test_iso_and_nllb_codes_resolve_to_the_same_language(code, model_code):
    lang = lookup(code)
    assert lang is not None and lang.model_code == model_code


@pytest.mark.parametrize("code", ["", "xx", "mga", "french", "plt_Cyrl", "fr-", "f"])
def test_unknown_codes_resolve_to_nothing(code):
    assert lookup(code) is None


def test_table_codes_are_unique_and_well_formed():
    assert len({lang.code for lang in KNOWN}) == len(KNOWN) >= 40
    assert len({lang.model_code for lang in KNOWN}) == len(KNOWN)
    assert all(len(lang.code) == 2 and len(lang.model_code) == 8 for lang in KNOWN)


def test_catalog_offers_only_languages_in_the_vocabulary():
    catalog = LanguageCatalog(["plt_Latn", "fra_Latn", "madeupword0", "<s>"])
    assert [lang.code for lang in catalog.languages] == ["mg", "fr"]
    assert [(s.code, t.code) for s, t in catalog.pairs] == [("mg", "fr"), ("fr", "mg")]
    with pytest.raises(InvalidArgument, match=r"'en' is not supported: use one of mg \(plt_Latn\)"):
        catalog.resolve_pair("mg", "en")


def test_catalog_limits_targets_but_not_sources():
    catalog = LanguageCatalog([*MILO_CODES, "deu_Latn"], targets=["mg", "fra_Latn"])
    assert {t.code for _, t in catalog.pairs} == {"mg", "fr"}
    src, tgt = catalog.resolve_pair("de", "mg")
    assert (src.model_code, tgt.model_code) == ("deu_Latn", "plt_Latn")
    with pytest.raises(InvalidArgument, match="target_language 'de' is not supported"):
        catalog.resolve_pair("mg", "de")
    with pytest.raises(ValueError, match="not offered"):
        LanguageCatalog(MILO_CODES, targets=["de"])


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("", "fr", "source_language is empty"),
        ("mg", "", "target_language is empty"),
        ("mg", "mg", "both mg"),
        ("plt_Latn", "mg", "both mg"),
        ("klingon", "fr", "'klingon'"),
    ],
)
def test_bad_pairs_are_invalid_argument_with_a_clear_message(source, target, message):
    with pytest.raises(InvalidArgument, match=message):
        LanguageCatalog(MILO_CODES).resolve_pair(source, target)


def test_catalog_needs_at_least_one_known_language():
    with pytest.raises(ValueError, match="none of the known"):
        LanguageCatalog(["a", "b"])


# --- sentences ---------------------------------------------------------------------------


def test_paragraph_and_line_breaks_survive_the_round_trip():
    text = "  Salama. Manao ahoana ianao?\n\nTsara aho!\n  Misaotra.  \n"
    doc = segment(text)
    assert doc.sentences == ("Salama.", "Manao ahoana ianao?", "Tsara aho!", "Misaotra.")
    assert doc.join(list(doc.sentences)) == text
    assert doc.join(["A", "B", "C", "D"]) == "  A B\n\nC\n  D  \n"


@pytest.mark.parametrize("text", ["", " ", "\n\n", " \t\n "])
def test_blank_texts_have_no_sentences_and_come_back_unchanged(text):
    doc = segment(text)
    assert doc.sentences == () and doc.join([]) == text


@pytest.mark.parametrize(
    ("line", "sentences"),
    [
        ("Bonjour M. Dupont. Ça va ?", ["Bonjour M. Dupont.", "Ça va ?"]),
        ("« Bonjour ! » dit-il. Puis il part.", ["« Bonjour ! » dit-il.", "Puis il part."]),
        ("J. R. R. Tolkien a écrit. Fin", ["J. R. R. Tolkien a écrit.", "Fin"]),
        ("Prix : 3.5 euros. OK… et puis ? Non.", ["Prix : 3.5 euros.", "OK… et puis ?", "Non."]),
        ("Tonga soa!Veloma", ["Tonga soa!Veloma"]),
        ("Dr. Rabe sy Mme. Rasoa. Eny.", ["Dr. Rabe sy Mme. Rasoa.", "Eny."]),
        ("Taona 2024. Andro 5. Vita.", ["Taona 2024.", "Andro 5.", "Vita."]),
    ],
)
def test_sentence_boundaries(line, sentences):
    assert split_sentences(line) == sentences


def test_long_sentences_are_cut_at_clauses_then_spaces():
    sentence = "teny " * 8 + "voalohany, " + "teny " * 30 + "farany"
    pieces = chop(sentence, 60)
    assert pieces[0].endswith("voalohany,") and all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert chop("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_join_refuses_a_wrong_number_of_translations():
    with pytest.raises(ValueError):
        segment("Eny. Tsia.").join(["only one"])


# --- guards ------------------------------------------------------------------------------


def test_length_limit_is_relative_to_the_input():
    limit = LengthLimit(ratio=2.0, extra=10)
    assert [limit.max_output(n) for n in (0, 1, 5, 100)] == [10, 12, 20, 210]
    assert LengthLimit(0.5, 0).max_output(3) == 2
    with pytest.raises(ValueError):
        LengthLimit(ratio=0)


@pytest.mark.parametrize(
    ("text", "expected", "cut"),
    [
        ("a b c d", "a b c d", False),
        ("a b b b c", "a b b b c", False),  # three times is still text
        ("a b b b b c", "a b", True),
        ("x de la de la de la y", "x de la", True),
        ("x de la de la y", "x de la de la y", False),
        ("p q r s t u p q r s t u p q r s t u", "p q r s t u", True),
        ("", "", False),
    ],
)
def test_loops_are_trimmed_after_their_first_copy(text, expected, cut):
    assert trim_loop(text.split()) == (expected.split(), cut)


# --- vocabulary restriction --------------------------------------------------------------


VOCAB = [
    "<s>",
    "<pad>",
    "</s>",
    "<unk>",
    "▁Salama",
    "▁été",
    "▁ñy",
    "▁Привет",
    "▁你好",
    "▁ø",
    "▁42",
    "!",
    "«",
    "plt_Latn",
    "fra_Latn",
    "<mask>",
    "▁straße",
]


def test_output_vocabulary_keeps_target_alphabets_and_drops_specials():
    mg_fr = [lookup("mg"), lookup("fr")]
    kept = allowed_pieces(VOCAB, mg_fr)  # type: ignore[arg-type]
    assert kept == ["▁Salama", "▁été", "▁ñy", "▁42", "!", "«"]
    russian = allowed_pieces(VOCAB, [lookup("ru")])  # type: ignore[list-item]
    assert "▁Привет" in russian and "▁Salama" not in russian
    german = allowed_pieces(VOCAB, [lookup("de")])  # type: ignore[list-item]
    assert "▁straße" in german and "▁ø" in german  # any Latin letter for other Latin languages


def test_vmap_lists_kept_pieces_always_and_others_only_from_the_source(tmp_path):
    path = tmp_path / "vmap.txt"
    write_vmap(path, VOCAB, ["▁Salama", "!"], ["plt_Latn"])
    lines = path.read_text("utf-8").splitlines()
    assert lines[0] == "\t▁Salama ! plt_Latn"  # the target codes too: see vocab.py
    assert "▁Привет\t▁Привет" in lines and "▁Salama\t▁Salama" not in lines
    assert not any(line.startswith(("plt_Latn", "fra_Latn", "<mask>")) for line in lines)


# --- batching policy ---------------------------------------------------------------------


POLICY = BatchPolicy(max_batch=8, window_s=0.005)
AFTER_16 = LastCall(end=9.999, duration=0.02, expected=16)  # served or awaited 16 callers


def test_nothing_pending_waits_forever():
    assert POLICY.wait_s(0, 0, AFTER_16, now=10.0) == math.inf


def test_a_lone_caller_goes_at_once():
    assert POLICY.wait_s(1, 1, LastCall(), now=10.0) == 0.0  # first call ever
    assert POLICY.wait_s(1, 1, LastCall(9.999, 0.02, 1), now=10.0) == 0.0  # its own last call


def test_a_full_batch_goes_at_once():
    assert POLICY.wait_s(8, 1, AFTER_16, now=10.0) == 0.0


def test_after_a_shared_call_waits_for_its_callers_to_come_back():
    assert POLICY.wait_s(3, 3, AFTER_16, now=10.0) == pytest.approx(0.004)
    assert POLICY.wait_s(7, 16, AFTER_16, now=10.0) == 0.0  # all back: go
    assert POLICY.wait_s(3, 3, AFTER_16, now=10.005) == 0.0  # window over


def test_the_wait_grows_with_long_engine_calls_and_zero_turns_it_off():
    slow = LastCall(end=10.0, duration=2.0, expected=16)
    assert POLICY.wait_s(3, 3, slow, now=10.0) == pytest.approx(0.2)  # a tenth of 2 s
    off = BatchPolicy(max_batch=8, window_s=0.0)
    assert off.wait_s(3, 3, slow, now=10.0) == 0.0


# --- phrase cache ------------------------------------------------------------------------


def test_cache_keeps_short_phrases_per_pair_and_beam_and_evicts_the_oldest():
    cache = PhraseCache(size=2, max_chars=10)
    hello, bye, thanks = (Job(t, "plt_Latn", "fra_Latn") for t in ("Salama.", "Veloma.", "Eny."))
    out = Output("Bonjour.", 3, 3)
    cache.put(hello, 2, out)
    assert cache.get(hello, 2) == out
    assert cache.get(hello, 4) is None
    assert cache.get(Job("Salama.", "plt_Latn", "eng_Latn"), 2) is None
    cache.put(bye, 2, out)
    cache.get(hello, 2)  # hello is now the most recent
    cache.put(thanks, 2, out)
    assert cache.get(bye, 2) is None and cache.get(hello, 2) == out and len(cache) == 2


def test_cache_skips_long_sentences_and_size_zero():
    cache = PhraseCache(size=4, max_chars=5)
    long_job, short_job = Job("Salama tompoko.", "a", "b"), Job("Eny.", "a", "b")
    cache.put(long_job, 1, Output("x", 1, 1))
    assert len(cache) == 0 and cache.get(long_job, 1) is None
    off = PhraseCache(size=0, max_chars=100)
    off.put(short_job, 1, Output("x", 1, 1))
    assert off.get(short_job, 1) is None


# --- nothing to translate, model limits, failure isolation ------------------------------


@pytest.mark.parametrize(
    "segment_text", ["...", "?", "!?", "42", "3,14 %", "😀", "👍🏽 🎉", "— 1 —", "#", "(...)"]
)
def test_segments_without_letters_have_nothing_to_translate(segment_text):
    assert not has_words(segment_text)


@pytest.mark.parametrize("segment_text", ["Salama.", "M.", "ok 👍", "Été", "日本", "١٢ كتاب"])
def test_segments_with_letters_in_any_script_are_translated(segment_text):
    assert has_words(segment_text)


@pytest.mark.parametrize(
    ("positions", "inputs", "outputs"),
    [(512, 256, 510), (1024, 256, 1022), (100, 98, 98), (None, 256, 1 << 30)],
)
def test_lengths_are_clamped_to_the_model_positions(positions, inputs, outputs):
    assert input_and_decoding_limits(256, positions) == (inputs, outputs)


def test_long_inputs_are_cut_in_windows_and_their_outputs_joined():
    assert token_windows(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert token_windows([], 3) == [[]]
    joined = join_outputs([Output("un", 3, 2), Output("", 3, 0), Output("deux", 1, 1, True)])
    assert joined == Output("un deux", 7, 3, truncated=True)


class Picky:
    """An engine that fails any batch holding a job whose text starts with 'BAD'."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, jobs: list[Job], beam: int) -> list[Output]:
        self.calls.append(len(jobs))
        if any(j.text.startswith("BAD") for j in jobs):
            raise RuntimeError("position 512")
        return [Output(j.text.upper(), 1, 1) for j in jobs]


@pytest.mark.parametrize("size", [1, 2, 3, 8, 32])
@pytest.mark.parametrize("bad", [[0], [-1], [0, -1], "all"])
def test_a_failing_job_fails_alone_and_the_rest_of_its_batch_is_retried(size, bad):
    jobs = [Job(f"job {i}", "plt_Latn", "fra_Latn") for i in range(size)]
    bad_at = set(range(size)) if bad == "all" else {b % size for b in bad}
    for i in bad_at:
        jobs[i] = Job(f"BAD {i}", "fra_Latn", "plt_Latn")
    run = Picky()
    results = run_isolated(run, jobs, 1)
    assert len(results) == size
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        if i in bad_at:
            assert isinstance(result, RuntimeError)
        else:
            assert result == Output(job.text.upper(), 1, 1)
    if not bad_at - {0, size - 1} and len(bad_at) == 1:  # one bad job: a bisection, not N calls
        assert len(run.calls) <= 1 + 2 * math.ceil(math.log2(size)) + 1
