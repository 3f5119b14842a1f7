"""A small LRU cache of translated short sentences ("Salama.", "Misaotra betsaka!").

Greetings and stock phrases recur in a conversation; a hit skips the model. Only sentences
up to `max_chars` are kept, so the cache holds many phrases in little memory. Decoding is
deterministic (beam search, no sampling), so a hit is exactly what the model would say.
"""

from __future__ import annotations

from collections import OrderedDict

from services.translate import metrics
from services.translate.engine import Job, Output

Key = tuple[str, str, int, str]  # source code, target code, beam size, sentence


class PhraseCache:
    """LRU cache of outputs keyed by (source code, target code, beam, sentence): at most `size`
    entries (0: off), sentences of at most `max_chars` characters."""

    def __init__(self, size: int, max_chars: int) -> None:
        self.size, self.max_chars = size, max_chars
        self._items: OrderedDict[Key, Output] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _key(self, job: Job, beam: int) -> Key | None:
        if self.size <= 0 or len(job.text) > self.max_chars:
            return None
        return (job.source, job.target, beam, job.text)

    def get(self, job: Job, beam: int) -> Output | None:
        """The cached output for `job` at this beam size, or None (counted as a hit or a miss)."""
        key = self._key(job, beam)
        if key is None:
            return None
        output = self._items.get(key)
        metrics.CACHE.labels("hit" if output is not None else "miss").inc()
        if output is not None:
            self._items.move_to_end(key)
        return output

    def put(self, job: Job, beam: int, output: Output) -> None:
        """Remember `output` for `job` (if short enough), evicting the least recently used entry."""
        key = self._key(job, beam)
        if key is None:
            return
        self._items[key] = output
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
