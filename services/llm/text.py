"""From token bytes to text deltas that are safe to send.

A token may end in the middle of a UTF-8 character, and a stop string may span several
tokens: `ReplyText` holds back an incomplete character and any tail that could be the start
of a stop string, cuts the reply before the first stop string, and drops the whitespace a
SentencePiece tokenizer puts before the first word (a spoken reply has no use for it).
Bytes that are not valid UTF-8 are dropped, as llama-cpp-python does: a replacement
character would only be noise for speech synthesis.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class ReplyText:
    """Turns one reply's token bytes into text deltas safe to send (module docstring); `stop`:
    strings that end the reply, not sent."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._stops = tuple(s for s in stop if s)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._held = ""  # decoded text not sent yet: it may begin a stop string
        self._started = False
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; returns the text that can be sent now (may be empty)."""
        if self.stopped:
            return ""
        return self._push(self._decoder.decode(data))

    def finish(self) -> str:
        """At the end of generation: everything still held back (nothing after a stop)."""
        if self.stopped:
            return ""
        text = self._push(self._decoder.decode(b"", final=True))
        rest, self._held = self._held, ""
        return text + rest

    def _push(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        held = self._held + text
        cut = first_stop(held, self._stops)
        if cut is not None:
            self.stopped, self._held = True, ""
            return held[:cut]
        keep = stop_prefix_length(held, self._stops)
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep]


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
