"""Batching policy of the STT decode scheduler: which waiting finals and Recognize decodes
go to the model together, and how long a free model waits for company.

Finals and Recognize clips that share the same decoding options (language, beam size,
prompt, word timings) can share one model call (`SttEngine.transcribe_batch`); partials
never do (best effort: they run alone, behind every final). When the model is free:

- a batch goes at once when it is full (`max_batch`), or when no other caller (stream or
  Recognize) is open that could bring a decode within the window: a lone conversation
  never waits;
- otherwise it waits at most `window_s` after its oldest decode arrived, so finals of
  streams that end at about the same moment share one call.

Decodes that arrive while the model is busy simply queue and leave together in the next
call, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

# (options, audios) -> one result or one exception per audio, in order
RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass(frozen=True)
class BatchPolicy:
    """At most `max_batch` decodes per model call; a batch waits at most `window_s` seconds after
    its oldest decode for other callers (0: never wait)."""

    max_batch: int = 8  # decodes per model call
    window_s: float = 0.005  # 0: never wait for company

    def wait_s(self, size: int, oldest_wait_s: float, other_callers: int) -> float:
        """0 to send a batch of `size` decodes now, else how long to wait before deciding
        again. `oldest_wait_s`: how long its oldest decode has waited; `other_callers`:
        open streams and Recognize calls that have no decode in this batch."""
        if size >= self.max_batch or other_callers <= 0 or self.window_s <= 0:
            return 0.0
        return max(0.0, self.window_s - oldest_wait_s)
