"""Restrict the output vocabulary to the pieces the target languages can use.

NLLB's 256k-piece output layer is more than half of the decoder's work per token, and at
small batches decoding is bound by reading those weights. CTranslate2 can score only a
candidate subset (`use_vmap` with a `vmap.txt` in the model folder), so a French or
Malagasy output need not score Cyrillic, Arabic or CJK pieces.

A piece is kept when each of its letters belongs to a target language: Milo's own
languages (mg, fr, en) by their alphabets, the others by their script. Digits, punctuation
and symbols are always kept, and every source piece can be copied to the output (names,
numbers, URLs), through an identity entry for each piece that is not kept. Special tokens
(<pad>, <mask>...) and language codes are not candidates, except the target languages'
codes: CTranslate2 (4.8) is meant to add each call's target prefix to the candidates, but
when a prefix is not in the map, a call after one with another prefix fails with
"vector::_M_range_check" (seen with mg->fr and fr->mg batches one after the other).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from services.translate.languages import Language

_ASCII = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALPHABETS = {
    "en": _ASCII,
    "fr": _ASCII | frozenset("àâæçéèêëîïôœùûüÿ"),
    "mg": _ASCII | frozenset("àâèéêëìîïñòôù"),
}
# Unicode character-name prefixes of each NLLB script (Jpan and Hans: kanji are "CJK").
_SCRIPT_NAMES = {
    "Latn": ("LATIN",),
    "Cyrl": ("CYRILLIC",),
    "Arab": ("ARABIC",),
    "Grek": ("GREEK",),
    "Hebr": ("HEBREW",),
    "Deva": ("DEVANAGARI",),
    "Beng": ("BENGALI",),
    "Taml": ("TAMIL",),
    "Thai": ("THAI",),
    "Ethi": ("ETHIOPIC",),
    "Hang": ("HANGUL",),
    "Hans": ("CJK",),
    "Jpan": ("CJK", "HIRAGANA", "KATAKANA"),
}

_SPECIAL = re.compile(r"^(<[^>]*>|[a-z]{3}_[A-Z][a-z]{3})$")  # "<mask>", "plt_Latn"

LetterTest = Callable[[str], bool]


def letter_test(languages: Iterable[Language]) -> LetterTest:
    """Whether a (lowercase) letter belongs to one of `languages`."""
    alphabet: set[str] = set()
    prefixes: list[str] = []
    for lang in languages:
        if lang.code in _ALPHABETS:
            alphabet |= _ALPHABETS[lang.code]
        else:
            prefixes.extend(_SCRIPT_NAMES.get(lang.script, (lang.script.upper(),)))
    names = tuple(prefixes)

    def test(letter: str) -> bool:
        if letter in alphabet:
            return True
        return bool(names) and unicodedata.name(letter, "").startswith(names)

    return test


def keep_piece(piece: str, test: LetterTest) -> bool:
    """True when `piece` is not a special token or language code and each of its letters passes
    `test`."""
    return not _SPECIAL.match(piece) and all(test(ch) for ch in piece.lower() if ch.isalpha())


def allowed_pieces(vocabulary: Sequence[str], languages: Iterable[Language]) -> list[str]:
    """The pieces of `vocabulary` that outputs in `languages` may contain."""
    test = letter_test(languages)
    return [piece for piece in vocabulary if keep_piece(piece, test)]


def write_vmap(
    path: Path, vocabulary: Sequence[str], allowed: Sequence[str], target_codes: Sequence[str]
) -> None:
    """A CTranslate2 vocabulary map: `allowed` and `target_codes` always, any other piece
    when it is in the source."""
    always = [p for p in (*allowed, *target_codes) if _mappable(p)]
    kept = set(always)
    with path.open("w", encoding="utf-8") as out:
        out.write("\t" + " ".join(always) + "\n")
        for piece in vocabulary:
            if piece not in kept and _mappable(piece) and not _SPECIAL.match(piece):
                out.write(f"{piece}\t{piece}\n")


def _mappable(piece: str) -> bool:
    """The vmap format splits on spaces and tabs: such pieces cannot be listed."""
    return bool(piece) and not any(c.isspace() for c in piece)
