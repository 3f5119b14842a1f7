"""Malagasy number words: cardinals, decimals, ordinals, digit strings.

Malagasy (standard Merina) reads a number from the smallest unit up: units, then tens,
then hundreds, thousands, ten-thousands (alina), hundred-thousands (hetsy), millions
(tapitrisa), billions (lavitrisa). Each place is one word group; the groups are joined by

- "ambin'ny" before ten itself (11-19: "roa ambin'ny folo"),
- "amby" before any other part worth less than 200 (the tens 20-90 and "zato", 100),
- "sy" before a part worth 200 or more ("telo sy roanjato", 203).

One is "iray", but "iraika" before "amby"/"ambin'ny" ("iraika amby roapolo", 21).
Thousands: 1000 is "arivo", 2000 "roa arivo"; higher places always say their count
("iray alina", 10 000; "iray hetsy", 100 000; "iray tapitrisa", 1 000 000). Millions and
billions take a count of 1 to 999 read the same way ("dimy amby roapolo tapitrisa").

Examples
    0       aotra                          11    iraika ambin'ny folo
    25      dimy amby roapolo              203   telo sy roanjato
    157     fito amby dimampolo amby zato  2,5   roa faingo dimy
    1998    valo amby sivifolo sy sivinjato sy arivo
    150301  iray sy telonjato sy dimy alina sy iray hetsy

Sources checked for these forms:
- W. E. Cousins, "A Concise Grammar of the Malagasy Language" (1883), chapter "Numerals"
  (Wikisource: A_Concise_Grammar_of_the_Malagasy_Language/Numerals): the cardinal table
  (folo, roapolo, efapolo, dimampolo, enimpolo, sivifolo, zato, arivo, alina, hetsy,
  tapitrisa), "iraika" in compounds, units first.
- languagesandnumbers.com, "How to count in Malagasy": aotra (0), iray/iraika, tens in
  -(m)polo, 11-19 with "ambin'ny folo".
- tantely.org, Malagasy lesson 3 (numbers): hundreds in -njato with efajato, dimanjato,
  eninjato; "amby" below 200 and "sy" from 200 up; worked examples 157, 203, 1998, 150301
  (all reproduced in tests/tts/test_tts_normalize.py).
- Malagasy press usage for 10^9 ("Ariary 797,9 lavitrisa" = 797.9 milliards) and the
  decimal comma read "faingo".
"""

from __future__ import annotations

import itertools

UNITS = ("aotra", "iray", "roa", "telo", "efatra", "dimy", "enina", "fito", "valo", "sivy")
TENS = (
    "",
    "folo",
    "roapolo",
    "telopolo",
    "efapolo",
    "dimampolo",
    "enimpolo",
    "fitopolo",
    "valopolo",
    "sivifolo",
)
HUNDREDS = (
    "",
    "zato",
    "roanjato",
    "telonjato",
    "efajato",
    "dimanjato",
    "eninjato",
    "fitonjato",
    "valonjato",
    "sivinjato",
)
# Places above the hundreds whose count is a single digit: (value, word).
_DIGIT_PLACES = ((1000, "arivo"), (10_000, "alina"), (100_000, "hetsy"))
# Places whose count is 1..999: (value, word).
_BIG_PLACES = ((10**6, "tapitrisa"), (10**9, "lavitrisa"))
MAX_CARDINAL = 10**12 - 1  # above this, numbers are read digit by digit

DECIMAL_WORD = "faingo"
FIRST = "voalohany"  # the ordinal "first"


def _parts(n: int) -> list[tuple[int, str]]:
    """The nonzero place groups of n, smallest first: (value of the group, words)."""
    parts: list[tuple[int, str]] = []
    if n % 10:
        parts.append((n % 10, UNITS[n % 10]))
    if n // 10 % 10:
        parts.append((n // 10 % 10 * 10, TENS[n // 10 % 10]))
    if n // 100 % 10:
        parts.append((n // 100 % 10 * 100, HUNDREDS[n // 100 % 10]))
    for value, word in _DIGIT_PLACES:
        count = n // value % 10
        if count:
            words = word if (count == 1 and value == 1000) else f"{UNITS[count]} {word}"
            parts.append((count * value, words))
    for value, word in _BIG_PLACES:
        count = n // value % 1000
        if count:
            parts.append((count * value, f"{cardinal(count)} {word}"))
    return parts


def _joiner(larger: int) -> str:
    if larger == 10:
        return "ambin'ny"
    return "amby" if larger < 200 else "sy"


def cardinal(n: int) -> str:
    """The Malagasy words for an integer, e.g. 25 -> "dimy amby roapolo"."""
    if n < 0:
        raise ValueError("cardinal() takes n >= 0")
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n == 0:
        return UNITS[0]
    parts = _parts(n)
    words = parts[0][1]
    for _, larger in itertools.pairwise(parts):
        joiner = _joiner(larger[0])
        if words == "iray" and joiner != "sy":
            words = "iraika"
        words = f"{words} {joiner} {larger[1]}"
    return words


def digits(text: str) -> str:
    """Read a digit string one digit at a time: "034" -> "aotra telo efatra"."""
    return " ".join(UNITS[int(d)] for d in text if d.isdigit())


def integer_string(text: str) -> str:
    """Read a written integer: a leading zero means a code, read digit by digit."""
    if len(text) > 1 and text.startswith("0"):
        return digits(text)
    return cardinal(int(text))


def fraction_digits(text: str) -> str:
    """The part after the decimal comma: leading zeros one by one, then the rest as a number
    when it is at most 3 digits, else digit by digit ("05" -> "aotra dimy", "25" -> ...)."""
    stripped = text.lstrip("0")
    zeros = [UNITS[0]] * (len(text) - len(stripped))
    if not stripped:
        return " ".join(zeros)
    rest = cardinal(int(stripped)) if len(stripped) <= 3 else digits(stripped)
    return " ".join([*zeros, rest])


def decimal(integer_part: str, fraction_part: str) -> str:
    """Read a decimal: "2", "5" -> "roa faingo dimy"."""
    if not fraction_part:
        return integer_string(integer_part)
    return f"{integer_string(integer_part)} {DECIMAL_WORD} {fraction_digits(fraction_part)}"


def ordinal(n: int) -> str:
    """faha- + the cardinal; "faha" loses its last vowel before a vowel (fahefatra, 4th).
    1st is "voalohany"."""
    if n == 1:
        return FIRST
    words = cardinal(n)
    if words[0] in "aeiouy":
        return "fah" + words
    return "faha" + words
