"""What the translate service needs from a model engine, and the types it exchanges.

The CTranslate2 engine (`ct2_engine.py`) is the real one; tier-2 tests inject a fake.
Engines are synchronous and called from one worker thread at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.runtime.model_service import Engine


@dataclass(frozen=True)
class Job:
    """One sentence to translate, with NLLB language codes."""

    text: str
    source: str  # "plt_Latn"
    target: str  # "fra_Latn"


@dataclass(frozen=True)
class Output:
    """One translated sentence, with its input and output token counts; `truncated` when a length
    or repetition guard cut it short."""

    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool = False  # a length or repetition guard cut it short


class TranslationEngine(Engine, Protocol):
    """One model (`load`, `close`: see `Engine`); the attributes are valid once loaded."""

    compute_type: str

    def language_codes(self) -> frozenset[str]:
        """The language codes present in the model's vocabulary."""
        ...

    def translate(self, jobs: Sequence[Job], beam_size: int) -> list[Output]:
        """One output per job, in order, in one engine call. Blocking."""
        ...
