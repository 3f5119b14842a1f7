"""From raw text to what the voice reads: sentences, normalized, cut into segments, and
filtered to the characters of the model's vocabulary.

    plan_text("Manao ahoana! Misaotra 2 000 ...", vocab, max_segment_chars=160) -> TextPlan

Sentences are cut on the raw text (so each keeps its written form) at . ! ? … and at line
breaks, but not after a title ("Dr.", "Rtoa.") nor before a lowercase letter. Each
sentence is normalized (services.tts.normalize), then cut at clause punctuation (, ; : —)
into segments of at most `max_segment_chars`, so that a long sentence does not delay the
first audio; a clause longer than that is cut between words.

The vocabulary filter: a character in the vocabulary is kept; punctuation and spaces become
a space (the model reads no punctuation; they are not "dropped"); a letter outside it is
replaced by its unaccented form when that is in the vocabulary ("ô" -> "o"); anything else
(emoji, other scripts, stray symbols) is dropped and counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from services.tts.normalize import normalize

# Words after which a period never ends a sentence.
TITLES = frozenset({"dr", "pr", "prof", "rtoa", "atoa", "rtsk", "no", "n°", "av", "mme", "m"})
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|\s+[—–-]\s+")


@dataclass(frozen=True)
class SentencePlan:
    """One sentence: as written, as the model reads it, and cut into the segments synthesized one
    at a time (clauses of a long sentence)."""

    index: int
    text: str  # as written
    normalized: str  # as the model reads it: the segments joined by spaces
    segments: tuple[str, ...]


@dataclass(frozen=True)
class TextPlan:
    """What a text will be synthesized as: its sentences, and the characters the model cannot
    say, which were dropped (their count and the distinct ones)."""

    sentences: tuple[SentencePlan, ...]
    dropped: int  # characters the model cannot say, dropped
    dropped_chars: str  # the distinct dropped characters, for messages and logs

    @property
    def segment_count(self) -> int:
        """Segments in all the sentences: the model calls this text takes."""
        return sum(len(s.segments) for s in self.sentences)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones left out."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if _continues(line, start, match):
                continue
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _continues(line: str, start: int, match: re.Match[str]) -> bool:
    """True when the punctuation at `match` does not end the sentence."""
    following = line[match.end() : match.end() + 1]
    if following.islower():
        return True
    if match.group(0).strip() != ".":
        return False
    words = line[start : match.start()].split()
    return bool(words) and words[-1].lower() in TITLES


def split_segments(sentence: str, max_chars: int) -> list[str]:
    """Cut a normalized sentence at clause punctuation, then pack whole clauses into
    segments of at most max_chars; a longer clause is cut between words."""
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        pieces.extend(_cut_words(clause.strip(), max_chars))
    segments: list[str] = []
    for piece in pieces:
        if segments and len(segments[-1]) + 1 + len(piece) <= max_chars:
            segments[-1] = f"{segments[-1]} {piece}"
        elif piece:
            segments.append(piece)
    return segments


def _cut_words(text: str, max_chars: int) -> list[str]:
    """Balanced pieces of at most max_chars, cut at spaces (inside a word only if one word
    is longer than max_chars)."""
    if len(text) <= max_chars:
        return [text]
    count = -(-len(text) // max_chars)
    target = -(-len(text) // count)
    pieces, current = [], ""
    for word in text.split():
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > min(target, max_chars):
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*pieces, current] if current else pieces


def keep_sayable(text: str, vocab: Collection[str]) -> tuple[str, str]:
    """(what the model can read, the characters dropped) for lowercase `text`."""
    kept: list[str] = []
    dropped: list[str] = []
    for char in text:
        if char in vocab:
            kept.append(char)
        elif char.isspace() or unicodedata.category(char).startswith("P"):
            kept.append(" ")
        elif (folded := _unaccented(char)) and all(c in vocab for c in folded):
            kept.append(folded)
        else:
            dropped.append(char)
    joiner = " " if " " in vocab else ""
    return joiner.join("".join(kept).split()), "".join(dropped)


def _unaccented(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def plan_text(text: str, vocab: Collection[str], max_segment_chars: int) -> TextPlan:
    """Sentences -> normalized -> segments -> filtered; sentences left empty are skipped."""
    sentences: list[SentencePlan] = []
    dropped: list[str] = []
    for written in split_sentences(text):
        segments: list[str] = []
        for segment in split_segments(normalize(written), max_segment_chars):
            sayable, lost = keep_sayable(segment, vocab)
            dropped.append(lost)
            if sayable:
                segments.append(sayable)
        if segments:
            plan = SentencePlan(len(sentences), written, " ".join(segments), tuple(segments))
            sentences.append(plan)
    lost_all = "".join(dropped)
    return TextPlan(tuple(sentences), len(lost_all), "".join(dict.fromkeys(lost_all)))
