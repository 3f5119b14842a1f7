"""Guards against runaway output: a length limit relative to the input, and loop trimming.

Pure logic on token lists. The decoder is also given `no_repeat_ngram_size` (see the
engine), which stops long repeated n-grams while decoding; `trim_loop` catches the short
loops it lets through ("do do do do", "de la de la de la") and says the output was cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LengthLimit:
    """At most `ratio` * input tokens + `extra` output tokens."""

    ratio: float = 2.0
    extra: int = 10

    def __post_init__(self) -> None:
        if self.ratio <= 0 or self.extra < 0:
            raise ValueError("ratio must be > 0 and extra >= 0")

    def max_output(self, input_tokens: int) -> int:
        """The most output tokens allowed for `input_tokens` input tokens (at least 1)."""
        return max(1, math.ceil(self.ratio * input_tokens) + self.extra)


def repeats_needed(unit: int) -> int:
    """How many back-to-back copies of a `unit`-token sequence count as a loop."""
    return 4 if unit == 1 else 3


def trim_loop(tokens: Sequence[str], max_unit: int = 8) -> tuple[list[str], bool]:
    """Cut `tokens` after the first copy of the earliest loop; (tokens, whether cut).

    A loop is a run of 1 to `max_unit` tokens repeated back to back `repeats_needed` times.
    """
    cut = len(tokens)
    for unit in range(1, max_unit + 1):
        start = _first_loop(tokens, unit, repeats_needed(unit) * unit)
        if start is not None:
            cut = min(cut, start + unit)
    return list(tokens[:cut]), cut < len(tokens)


def _first_loop(tokens: Sequence[str], unit: int, span: int) -> int | None:
    """Start of the first stretch of `span` tokens with period `unit`, if any."""
    run = 0  # how many positions back have matched tokens[i] == tokens[i - unit]
    for i in range(unit, len(tokens)):
        run = run + 1 if tokens[i] == tokens[i - unit] else 0
        if run + unit >= span:
            return i - span + 1
    return None
