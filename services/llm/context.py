"""Fit a conversation into the model's context by dropping its oldest turns.

The system prompt is never dropped, nor the last message. Turns go oldest first, and an
assistant message left at the front goes with the user message before it, so the kept
conversation still starts with the user (chat templates such as Mistral's require it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.llm.domain import ChatMessage, Role


class ContextOverflow(Exception):
    """Even the system prompt and the last message do not fit."""

    def __init__(self, needed_tokens: int) -> None:
        super().__init__(f"{needed_tokens} tokens needed")
        self.needed_tokens = needed_tokens


@dataclass(frozen=True)
class Fitted:
    messages: tuple[ChatMessage, ...]
    prompt_tokens: int
    dropped: int


def fit_conversation(
    messages: Sequence[ChatMessage],
    count_tokens: Callable[[Sequence[ChatMessage]], int],
    budget: int,
) -> Fitted:
    """Drop the oldest turns until `count_tokens(kept) <= budget`.

    `budget` is the context minus the completion asked for. Raises ContextOverflow when the
    system prompt and the last message alone take more than that.
    """
    system = [m for m in messages[:1] if m.role is Role.SYSTEM]
    turns = list(messages[len(system) :])
    dropped = 0
    while True:
        kept = (*system, *turns)
        tokens = count_tokens(kept)
        if tokens <= budget:
            return Fitted(kept, tokens, dropped)
        if len(turns) <= 1:
            raise ContextOverflow(tokens)
        turns.pop(0)
        dropped += 1
        while len(turns) > 1 and turns[0].role is not Role.USER:
            turns.pop(0)
            dropped += 1
