"""What the chat runner needs from a local model. The real one is `LlamaEngine`
(llama-cpp-python); tier-2 tests inject a fake.

Engines are synchronous: the runner calls `generate` from up to `parallel` model threads at
once (one per reply in flight), so an engine that batches (continuous batching) gets its
concurrent requests; an engine with `parallel = 1` never sees two generations at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from services.llm.domain import ChatMessage, Event, Sampling
from services.runtime.model_service import Engine


class TemplateError(Exception):
    """The model's chat template rejected the conversation (e.g. roles not alternating)."""


class ChatEngine(Engine, Protocol):
    """One model (`load` loads and warms it up, `close`: see `Engine`)."""

    context_tokens: int  # the context window of one reply, prompt and completion together
    parallel: int  # generations it runs at once (1: one at a time)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt these messages make with the chat template.

        Raises TemplateError when the template rejects them."""
        ...

    def generate(
        self, messages: Sequence[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Iterator[Event]:
        """Stream Pieces as tokens are produced, then exactly one Finish.

        `cancel` is checked between tokens: once it is set, at most the token being computed
        is finished, and the Finish says CANCELLED."""
        ...
