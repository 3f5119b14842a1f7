"""Cut a stream of LLM text deltas into whole sentences, as early as is safe.

A sentence ends at . ! ? … (or a newline) followed by whitespace, so "3.5" never ends
one; nor do abbreviations and initials ("M. Dupont", "etc. et", "J. Rabe"). A run-on
sentence is cut at the last clause mark (, ; :) once it passes `max_chars`, or hard at a
word boundary past 1.5x, so the first audio never waits for a sentence that does not end.
"""

from __future__ import annotations

import re

_END = re.compile(r"([.!?…]+[\"'»)\]]*)(\s+)|(\n+)")
# Words whose trailing period does not end a sentence (French and Malagasy, lower case).
_ABBREVIATIONS = frozenset(
    (
        "m",
        "mm",
        "mme",
        "mlle",
        "dr",
        "pr",
        "st",
        "ste",
        "etc",
        "av",
        "apr",
        "bd",
        "cf",
        "ex",
        "fig",
        "n",
        "no",
        "p",
        "vol",
        "env",
        "art",
        "chap",
        "ra",
        "rtoa",
        "atoa",
        "dok",
        "prof",
    )
)
_CLAUSE = re.compile(r"[,;:—–]\s")


class SentenceCutter:
    """Sentences out of streamed text: `feed` each delta, then `flush` at the end.
    `max_chars` (characters) is where a run-on sentence starts to be cut."""

    def __init__(self, max_chars: int = 160) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        """Add text; return the sentences it completed (possibly none)."""
        self._buffer += delta
        out: list[str] = []
        while True:
            cut = self._find_end() or self._find_overflow()
            if cut is None:
                return out
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if sentence:
                out.append(sentence)

    def flush(self) -> list[str]:
        """The rest, at the end of the stream."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _find_end(self) -> int | None:
        for match in _END.finditer(self._buffer):
            if match.group(3) is not None:
                return match.end()
            if not _is_false_end(self._buffer, match.start()):
                return match.end()
        return None

    def _find_overflow(self) -> int | None:
        if len(self._buffer) <= self.max_chars:
            return None
        head = self._buffer[: int(self.max_chars * 1.5)]
        clauses = [m.end() for m in _CLAUSE.finditer(head) if m.end() >= self.max_chars // 3]
        if clauses:
            return clauses[-1]
        if len(self._buffer) < self.max_chars * 1.5:
            return None  # wait a little for a clause mark or the sentence end
        space = head.rfind(" ")
        return space if space > 0 else len(head)


def _is_false_end(text: str, dot: int) -> bool:
    """True when the punctuation at `dot` is inside an abbreviation or a number."""
    if text[dot] != ".":
        return False
    word = re.search(r"(\w+)$", text[:dot])
    if word is None:
        return False
    token = word.group(1)
    return token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())
