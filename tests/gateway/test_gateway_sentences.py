"""Tier 1: cutting the LLM's stream into sentences."""

from gateway.sentences import SentenceCutter


def cut(text: str, step: int = 3, max_chars: int = 160) -> list[str]:
    cutter = SentenceCutter(max_chars)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += cutter.feed(text[i : i + step])
    return out + cutter.flush()


def test_sentences_cut_at_end_marks_whatever_the_delta_boundaries():
    text = "Bonjour ! Comment allez-vous ? Je vais bien. Et vous…  Merci."
    expected = ["Bonjour !", "Comment allez-vous ?", "Je vais bien.", "Et vous…", "Merci."]
    for step in (1, 2, 5, 100):
        assert cut(text, step) == expected


def test_abbreviations_initials_and_decimals_do_not_end_a_sentence():
    text = "M. Rakoto a 3.5 ans, etc. et J. Rabe aussi. Fin."
    assert cut(text) == ["M. Rakoto a 3.5 ans, etc. et J. Rabe aussi.", "Fin."]


def test_a_sentence_is_emitted_as_soon_as_it_is_complete():
    cutter = SentenceCutter()
    assert cutter.feed("Salama. Ny") == ["Salama."]
    assert cutter.feed(" andro") == []
    assert cutter.flush() == ["Ny andro"]


def test_run_on_sentence_is_cut_at_a_clause_then_hard_at_a_word():
    clause = "un mot, " * 30
    parts = cut(clause, max_chars=60)
    assert all(len(p) <= 90 for p in parts) and len(parts) > 3
    assert all(p.endswith(",") for p in parts[:-1])
    words = "mot " * 100
    parts = cut(words, max_chars=60)
    assert all(len(p) <= 90 for p in parts) and "".join(parts).replace(" ", "") == "mot" * 100


def test_newline_ends_a_sentence_and_empty_input_gives_nothing():
    assert cut("Liste\n- un\n") == ["Liste", "- un"]
    assert cut("   ") == []
