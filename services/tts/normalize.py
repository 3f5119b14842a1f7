"""Malagasy text normalization: spell out everything the voice cannot read as written.

The MMS-TTS voice reads only the lowercase letters of its vocabulary; a digit, a symbol or
an abbreviation that reaches it is silently skipped. `normalize()` rewrites them as
Malagasy words, rule by rule, in the order of `RULES` (earlier rules see the digits first):

| rule         | written                  | read                                                 |
|--------------|--------------------------|------------------------------------------------------|
| date         | 26/06/1960, 1960-06-26   | enina amby roapolo jona enimpolo sy sivinjato sy arivo |
| day 1        | 1 janoary                | voalohany janoary                                    |
| time         | 14:30, 14h30, 8h         | efatra ambin'ny folo ora sy telopolo minitra; valo ora |
| money        | 5 000 Ar, 12 €, $3       | dimy arivo ariary; roa ambin'ny folo eoro; telo dolara |
| percent      | 15 %, 75%-n'ny           | dimy ambin'ny folo isan-jato; ... isan-jaton'ny      |
| unit         | 12 km, 3 kg, 60 km/h     | roa ambin'ny folo kilaometatra; telo kilao; ...      |
| ordinal      | faha-4, n° 7             | fahefatra; laharana fito                             |
| number       | 1 500 000                | dimy hetsy sy iray tapitrisa                         |
|              | 3,5; 034                 | telo faingo dimy; aotra telo efatra                  |
| abbreviation | Dr, Rtoa, Atoa, sns.     | dokotera, ramatoa, andriamatoa, sy ny sisa           |
| symbol       | &, +, =, @, %, °, €, $   | sy, miampy, mitovy amin'ny, arobasy, isan-jato, ...  |

Numbers follow the French conventions of the text Milo translates: a decimal comma
("3,5"), thousands grouped by spaces or dots ("1 500", "1.500"); a dot followed by other
than three digits is a decimal point ("3.5"). Number words and their sources: see
`services.tts.numbers`. The result is lowercase; punctuation is kept (the sentence splitter
and the vocabulary filter in `services.tts.text` deal with it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from services.tts import numbers as num

MONTHS = (
    "janoary",
    "febroary",
    "martsa",
    "aprily",
    "mey",
    "jona",
    "jolay",
    "aogositra",
    "septambra",
    "oktobra",
    "novambra",
    "desambra",
)

_SPACE = "[ \u00a0\u202f]"  # space, no-break space, narrow no-break space (French grouping)
# An integer with optional thousands groups, then an optional decimal part.
_NUMBER = (
    r"(?<![\d])(?P<int>\d{1,3}(?:(?:" + _SPACE + r"|\.(?=\d{3}(?!\d)))\d{3})+(?!\d)|\d+)"
    r"(?:[,.](?P<frac>\d+))?(?![\d])"
)

CURRENCIES = {
    "ar": "ariary",
    "ariary": "ariary",
    "mga": "ariary",
    "€": "eoro",
    "eur": "eoro",
    "euro": "eoro",
    "euros": "eoro",
    "eoro": "eoro",
    "$": "dolara",
    "usd": "dolara",
    "dolara": "dolara",
}
_CURRENCY = r"(?P<cur>Ar|ariary|MGA|€|EUR|euros?|eoro|\$|USD|dolara)"

UNITS = {
    "km/h": "kilaometatra isan'ora",
    "km": "kilaometatra",
    "cm": "santimetatra",
    "mm": "milimetatra",
    "m": "metatra",
    "kg": "kilao",
    "g": "grama",
    "l": "litatra",
    "mn": "minitra",
    "min": "minitra",
    "s": "segondra",
    "°c": "degre",
    "°": "degre",
}
_UNIT = r"(?P<unit>km/h|km|cm|mm|kg|mn|min|°C|°|m|g|l|L|s)(?![\w])"

ABBREVIATIONS = {
    "Dr": "dokotera",
    "Pr": "profesora",
    "Prof": "profesora",
    "Rtoa": "ramatoa",
    "Atoa": "andriamatoa",
    "Rtsk": "ramatoakely",
    "sns": "sy ny sisa",
    "etc": "sy ny sisa",
    "tel": "telefaonina",
    "Tel": "telefaonina",
    "tél": "telefaonina",
}
SYMBOLS = {
    "&": "sy",
    "+": "miampy",
    "=": "mitovy amin'ny",
    "@": "arobasy",
    "%": "isan-jato",
    "°": "degre",
    "€": "eoro",
    "$": "dolara",
    "§": "andininy",
}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})


def _number(m: re.Match[str]) -> str:
    """Words for the named groups int (maybe grouped) and frac of a _NUMBER match."""
    whole = re.sub(r"\D", "", m.group("int"))
    return num.decimal(whole, m.group("frac") or "")


def _spaced_number(m: re.Match[str]) -> str:
    return f" {_number(m)} "  # digits glued to letters ("RN7") become a word of their own


def _day(text: str) -> str:
    return num.FIRST if int(text) == 1 else num.cardinal(int(text))


def _date(day: str, month: str, year: str, original: str) -> str:
    d, mo = int(day), int(month)
    if not (1 <= d <= 31 and 1 <= mo <= 12):
        return original  # not a date: the number rule reads it
    return f"{_day(day)} {MONTHS[mo - 1]} {num.cardinal(int(year))}"


def _dmy(m: re.Match[str]) -> str:
    return _date(m["d"], m["m"], m["y"], m.group(0))


def _ymd(m: re.Match[str]) -> str:
    return _date(m["d"], m["m"], m["y"], m.group(0))


def _time(m: re.Match[str]) -> str:
    words = f"{num.cardinal(int(m['h']))} ora"
    if m["min"] and int(m["min"]):
        words += f" sy {num.cardinal(int(m['min']))} minitra"
    if m["sec"] and int(m["sec"]):
        words += f" sy {num.cardinal(int(m['sec']))} segondra"
    return words


def _money(m: re.Match[str]) -> str:
    return f"{_number(m)} {CURRENCIES[m['cur'].lower()]}"


def _percent(m: re.Match[str]) -> str:
    suffix = "n'ny" if m["of"] else ""  # "75%-n'ny" -> "... isan-jaton'ny"
    return f"{_number(m)} isan-jato{suffix}"


def _unit(m: re.Match[str]) -> str:
    return f"{_number(m)} {UNITS[m['unit'].lower()]}"


def _ordinal(m: re.Match[str]) -> str:
    return num.ordinal(int(m["n"]))


def _abbreviation(m: re.Match[str]) -> str:
    return ABBREVIATIONS[m["abbr"]]


@dataclass(frozen=True)
class Rule:
    """One rewrite: every match of `pattern` is replaced by `replace(match)`."""

    name: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]
    examples: tuple[tuple[str, str], ...] = ()


def _rule(
    name: str,
    pattern: str,
    replace: Callable[[re.Match[str]], str],
    *examples: tuple[str, str],
    flags: int = 0,
) -> Rule:
    return Rule(name, re.compile(pattern, flags), replace, examples)


_MONTH_NAMES = "|".join(MONTHS)

RULES: tuple[Rule, ...] = (
    _rule(
        "date",
        r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)",
        _ymd,
        ("1960-06-26", "enina amby roapolo jona enimpolo sy sivinjato sy arivo"),
    ),
    _rule(
        "date",
        r"(?<!\d)(?P<d>\d{1,2})([/.-])(?P<m>\d{1,2})\2(?P<y>\d{4})(?!\d)",
        _dmy,
        ("01/03/2024", "voalohany martsa efatra amby roapolo sy roa arivo"),
    ),
    _rule(
        "day 1",
        rf"(?<!\d)0?1(?=\s+(?:{_MONTH_NAMES})\b)",
        lambda m: num.FIRST,
        ("1 janoary", "voalohany janoary"),
        flags=re.IGNORECASE,
    ),
    _rule(
        "time",
        r"(?<!\d)(?P<h>[01]?\d|2[0-3])\s?(?:[:hH]|ora)\s?(?P<min>[0-5]\d)"
        r"(?::(?P<sec>[0-5]\d))?(?:\s?(?:mn|min)\b)?(?!\d)",
        _time,
        ("14:30", "efatra ambin'ny folo ora sy telopolo minitra"),
        ("8h00", "valo ora"),
    ),
    _rule(
        "time",
        r"(?<![\d,.])(?P<h>[01]?\d|2[0-3])\s?[hH](?P<min>)(?P<sec>)(?![\w])",
        _time,
        ("8h", "valo ora"),
    ),
    _rule(
        "money",
        _NUMBER + r"\s?" + _CURRENCY + r"(?![\w])",
        _money,
        ("5 000 Ar", "dimy arivo ariary"),
        ("2,50 €", "roa faingo dimampolo eoro"),
    ),
    _rule("money", r"(?<![\w])(?P<cur>€|\$|USD|EUR)\s?" + _NUMBER, _money, ("$3", "telo dolara")),
    _rule(
        "percent",
        _NUMBER + r"\s?%(?P<of>-?n'ny)?",
        _percent,
        ("15 %", "dimy ambin'ny folo isan-jato"),
        ("75%-n'ny", "dimy amby fitopolo isan-jaton'ny"),
    ),
    _rule(
        "unit",
        _NUMBER + r"\s?" + _UNIT,
        _unit,
        ("12 km", "roa ambin'ny folo kilaometatra"),
        ("3 kg", "telo kilao"),
    ),
    _rule(
        "ordinal",
        r"\bfaha-?\s?(?P<n>\d+)(?!\d)",
        _ordinal,
        ("faha-4", "fahefatra"),
        ("faha 20", "faharoapolo"),
        flags=re.IGNORECASE,
    ),
    _rule(
        "ordinal",
        r"(?<!\d)(?P<n>\d+)(?:er|re|ère|e|ème|eme)(?![\w])",
        _ordinal,
        ("1er", "voalohany"),
        ("3e", "fahatelo"),
    ),
    _rule(
        "ordinal",
        r"(?<![\w])(?:n°|N°|No\.)\s?(?=\d)",
        lambda m: "laharana ",
        ("n° 7", "laharana fito"),
    ),
    _rule(
        "number",
        _NUMBER,
        _spaced_number,
        ("1 500 000", "dimy hetsy sy iray tapitrisa"),
        ("3,5", "telo faingo dimy"),
        ("034", "aotra telo efatra"),
    ),
    _rule(
        "abbreviation",
        r"(?<![\w])(?P<abbr>" + "|".join(ABBREVIATIONS) + r")\b\.?",
        _abbreviation,
        ("Dr Rabe", "dokotera rabe"),
        ("sns.", "sy ny sisa"),
    ),
    _rule(
        "symbol",
        "[" + re.escape("".join(SYMBOLS)) + "]",
        lambda m: f" {SYMBOLS[m.group(0)]} ",
        ("a & b", "a sy b"),
    ),
)


def normalize(text: str) -> str:
    """Spell out numbers, dates, times, money, percentages, units, abbreviations and
    symbols in Malagasy words; lowercase; whitespace collapsed; punctuation kept."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    for rule in RULES:
        text = rule.pattern.sub(rule.replace, text)
    return " ".join(text.lower().split())
