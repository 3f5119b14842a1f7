"""Tier 1: Malagasy normalization, numbers to words (services.tts.numbers, .normalize)."""

from __future__ import annotations

import pytest

from services.tts import numbers
from services.tts.normalize import RULES, normalize

# Cardinals, including every worked example of the sources cited in services.tts.numbers.
CARDINALS = [
    (0, "aotra"),
    (1, "iray"),
    (7, "fito"),
    (10, "folo"),
    (11, "iraika ambin'ny folo"),
    (15, "dimy ambin'ny folo"),
    (20, "roapolo"),
    (21, "iraika amby roapolo"),
    (25, "dimy amby roapolo"),
    (23, "telo amby roapolo"),  # mylanguages.org
    (78, "valo amby fitopolo"),  # mylanguages.org
    (90, "sivifolo"),
    (100, "zato"),
    (101, "iraika amby zato"),
    (132, "roa amby telopolo amby zato"),  # mylanguages.org
    (157, "fito amby dimampolo amby zato"),  # tantely.org
    (203, "telo sy roanjato"),  # tantely.org
    (400, "efajato"),
    (500, "dimanjato"),
    (600, "eninjato"),
    (1000, "arivo"),
    (1001, "iray sy arivo"),
    (1998, "valo amby sivifolo sy sivinjato sy arivo"),  # tantely.org
    (2000, "roa arivo"),
    (2765, "dimy amby enimpolo sy fitonjato sy roa arivo"),  # tantely.org
    (10_000, "iray alina"),
    (25_000, "dimy arivo sy roa alina"),
    (100_000, "iray hetsy"),
    (150_301, "iray sy telonjato sy dimy alina sy iray hetsy"),  # tantely.org
    (1_000_000, "iray tapitrisa"),
    (1_500_000, "dimy hetsy sy iray tapitrisa"),
    (25_000_000, "dimy amby roapolo tapitrisa"),
    (
        999_999_999,
        "sivy amby sivifolo sy sivinjato sy sivy arivo sy sivy alina sy sivy hetsy "
        "sy sivy amby sivifolo sy sivinjato tapitrisa",
    ),
    (2_000_000_000, "roa lavitrisa"),
]


@pytest.mark.parametrize(("n", "words"), CARDINALS)
def test_cardinal(n: int, words: str) -> None:
    assert numbers.cardinal(n) == words


# Written text -> what the voice reads (at least 30 cases over every rule).
CASES = [
    # integers, from 0 to millions, in running text
    ("0", "aotra"),
    ("Misy 3 trano.", "misy telo trano."),
    ("olona 12", "olona roa ambin'ny folo"),
    ("Taona 2024", "taona efatra amby roapolo sy roa arivo"),
    ("mponina 150 301", "mponina iray sy telonjato sy dimy alina sy iray hetsy"),
    ("1 000 000 olona", "iray tapitrisa olona"),
    ("3.500 km", "dimanjato sy telo arivo kilaometatra"),
    ("RN7", "rn fito"),
    ("tel. 034 12", "telefaonina aotra telo efatra roa ambin'ny folo"),
    # decimals
    ("3,5", "telo faingo dimy"),
    ("0,25", "aotra faingo dimy amby roapolo"),
    ("2,05 m", "roa faingo aotra dimy metatra"),
    ("1.5", "iray faingo dimy"),
    # times
    ("amin'ny 3:15", "amin'ny telo ora sy dimy ambin'ny folo minitra"),
    ("14h30", "efatra ambin'ny folo ora sy telopolo minitra"),
    ("tamin'ny 8h", "tamin'ny valo ora"),
    ("10:00:05", "folo ora sy dimy segondra"),
    # dates
    ("26/06/1960", "enina amby roapolo jona enimpolo sy sivinjato sy arivo"),
    ("2024-03-01", "voalohany martsa efatra amby roapolo sy roa arivo"),
    ("ny 1 janoary", "ny voalohany janoary"),
    # money
    ("5 000 Ar", "dimy arivo ariary"),
    ("Ariary 1 200", "ariary roanjato sy arivo"),
    ("12 ariary", "roa ambin'ny folo ariary"),
    ("20 €", "roapolo eoro"),
    ("2,50 €", "roa faingo dimampolo eoro"),
    ("€10", "folo eoro"),
    ("1,90$", "iray faingo sivifolo dolara"),
    # percentages
    ("15 %", "dimy ambin'ny folo isan-jato"),
    ("100%", "zato isan-jato"),
    ("75%-n’ny mponina", "dimy amby fitopolo isan-jaton'ny mponina"),
    # ordinals
    ("faha-4", "fahefatra"),
    ("ny faha 21", "ny fahiraika amby roapolo"),
    ("trano n° 3", "trano laharana telo"),
    # abbreviations and units
    ("Dr. Rakoto sy Rtoa Rasoa", "dokotera rakoto sy ramatoa rasoa"),
    ("Atoa Be", "andriamatoa be"),
    ("vary, mofo, sns.", "vary, mofo, sy ny sisa"),
    ("60 km/h", "enimpolo kilaometatra isan'ora"),
    ("3 kg", "telo kilao"),
    # symbols
    ("A & B", "a sy b"),
    ("2 + 2 = 4", "roa miampy roa mitovy amin'ny efatra"),
    ("rakoto@mail", "rakoto arobasy mail"),
    ("25°", "dimy amby roapolo degre"),
]


@pytest.mark.parametrize(("written", "read"), CASES)
def test_normalize(written: str, read: str) -> None:
    assert normalize(written) == read


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("rule", "written", "read"),
    [(r.name, w, e) for r in RULES for w, e in r.examples],
)
def test_every_rule_example_in_the_docs_holds(rule: str, written: str, read: str) -> None:
    assert normalize(written) == read, rule


def test_no_digit_survives_normalization() -> None:
    text = "0 1 22 333 4444 55555 1,5 2.25 10:30 3h 4% 5€ $6 7 Ar 8km 9e faha-10 x11y 1/2/2020"
    assert not any(c.isdigit() for c in normalize(text))


def test_not_a_date_falls_back_to_numbers() -> None:
    assert normalize("45/13/2020") == (
        "dimy amby efapolo / telo ambin'ny folo / roapolo sy roa arivo"
    )


def test_huge_number_read_digit_by_digit() -> None:
    assert numbers.cardinal(10**12) == "iray " + " ".join(["aotra"] * 12)


def test_ordinal_first_and_vowel_elision() -> None:
    assert [numbers.ordinal(n) for n in (1, 2, 4, 6, 10)] == [
        "voalohany",
        "faharoa",
        "fahefatra",
        "fahenina",
        "fahafolo",
    ]
