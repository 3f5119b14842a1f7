"""Text normalization for scoring Malagasy (and any Latin-script) transcripts.

Both the reference and the hypothesis go through `normalize` before WER/CER, so that only
the words count, not how they are written:

1. Unicode NFKC, then case-folded ("Antananarivo" = "antananarivo").
2. Apostrophes: every variant (' ’ ‘ ʼ ` ´ ′) is one; Malagasy elisions ("an'ny",
   "n'i", "fanahin'ny") are split at the apostrophe into their words ("an ny"), so
   "an'ny", "an' ny" and "an ny" all score the same, whatever spacing the model chose.
3. Hyphens, dashes, slashes and all other punctuation and symbols become spaces
   ("tsara-tarehy" = "tsara tarehy"); digits are kept as written.
4. Diacritics are kept (ô, à, è are spelling: "tô" is not "to").
5. Runs of whitespace become one space; leading and trailing space is removed.

CER is computed on the normalized strings, spaces included.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = "'\u2019\u2018\u02bc`\u00b4\u2032"
_SPACES = re.compile(r"\s+")


def _is_separator(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "PSZC" or char in _APOSTROPHES


def normalize(text: str) -> str:
    """`text` normalized for scoring as the module docstring says."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if _is_separator(c) else c for c in text)
    return _SPACES.sub(" ", text).strip()
