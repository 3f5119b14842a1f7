"""Split a text into sentences to translate, and put the translations back in its layout.

Pure logic. Line and paragraph breaks (and the whitespace around them) are kept exactly;
sentences of one line are joined back with a single space. A sentence longer than
`max_chars` is cut at a clause boundary (", ", "; ", ": "), else at a space, so the model
never sees an input far longer than the sentences it was trained on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# A line break with the whitespace around it, or leading / trailing whitespace.
_LAYOUT = re.compile(r"(\A\s+|\s*\n\s*|\s+\Z)")
# End punctuation, closing quotes or brackets (French puts a space before »), then space.
_END = re.compile(r"[.!?…。！？]+(?:\s?[»”’\"')\]])*\s+")
# Words before a "." that do not end a sentence when a capital follows: "M. Rakoto".
_ABBREVIATIONS = frozenset(
    {
        "m",
        "mm",
        "mme",
        "mmes",
        "mlle",
        "dr",
        "pr",
        "mr",
        "mrs",
        "ms",
        "st",
        "ste",
        "prof",
        "gen",
        "col",
        "cf",
        "p",
        "pp",
        "vol",
        "no",
        "fig",
        "av",
        "bd",
    }
)
_CLAUSE = re.compile(r"[,;:]\s")


@dataclass(frozen=True)
class Segmented:
    """A text as sentences plus a template: literal strings and sentence indexes."""

    sentences: tuple[str, ...]
    template: tuple[str | int, ...]

    def join(self, translations: Sequence[str]) -> str:
        """The text with each sentence replaced by its translation, layout intact."""
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations, {len(self.sentences)} sentences")
        return "".join(p if isinstance(p, str) else translations[p] for p in self.template)


def segment(text: str, max_chars: int = 400) -> Segmented:
    """Sentences of `text` and how to join their translations back."""
    sentences: list[str] = []
    template: list[str | int] = []
    for i, part in enumerate(_LAYOUT.split(text)):
        if i % 2:
            template.append(part)  # a separator, kept as it is
        else:
            _add_line(part, sentences, template, max_chars)
    return Segmented(tuple(sentences), tuple(template))


def _add_line(line: str, sentences: list[str], template: list[str | int], max_chars: int) -> None:
    pieces = [piece for part in split_sentences(line) for piece in chop(part, max_chars)]
    for i, sentence in enumerate(pieces):
        if i:
            template.append(" ")
        template.append(len(sentences))
        sentences.append(sentence)


def split_sentences(line: str) -> list[str]:
    """Sentences of one line (no line breaks inside), stripped."""
    out, start = [], 0
    for end in _END.finditer(line):
        if _is_boundary(line, end):
            out.append(line[start : end.end()].strip())
            start = end.end()
    rest = line[start:].strip()
    if rest:
        out.append(rest)
    return out


def _is_boundary(line: str, end: re.Match[str]) -> bool:
    after = line[end.end() : end.end() + 1]
    if after.islower():
        return False  # "etc. et ainsi de suite": the sentence goes on
    if end.group().startswith(".") and not end.group().startswith(".."):
        word = re.search(r"([^\W\d_]+)\Z", line[: end.start()])
        if word and (word.group(1).lower() in _ABBREVIATIONS or len(word.group(1)) == 1):
            return False  # "M. Rakoto", "J. R. R. Tolkien"
    return True


def has_words(segment: str) -> bool:
    """Whether `segment` holds any letter (of any script). Segments without one ("...",
    "?", "42", an emoji) have nothing to translate: models invent words for them (the
    demo model turned "..." into "m"; NLLB is known to do the same), so they are kept as
    they are."""
    return any(unicodedata.category(ch).startswith("L") for ch in segment)


def chop(sentence: str, max_chars: int) -> list[str]:
    """`sentence` in pieces of at most `max_chars`, cut at a clause or word boundary."""
    pieces = []
    while len(sentence) > max_chars:
        window = sentence[: max_chars + 1]
        clauses = [m.end() for m in _CLAUSE.finditer(window)]
        cut = clauses[-1] if clauses and clauses[-1] > max_chars // 3 else window.rfind(" ") + 1
        if cut <= 0:
            cut = max_chars
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces
