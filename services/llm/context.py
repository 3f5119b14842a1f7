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
    """The messages kept, their prompt length in tokens, and how many messages were dropped."""

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
    system prompt and the last message alone take more than that. The cut is found by
    bisection (a prompt never grows when turns are dropped), so a long conversation costs a
    few token counts, not one per dropped message.
    """
    system = tuple(m for m in messages[:1] if m.role is Role.SYSTEM)
    turns = tuple(messages[len(system) :])
    # Where the kept turns may start: anywhere a user message is, or at the very start.
    users = (i for i, m in enumerate(turns) if m.role is Role.USER)
    starts = sorted({0, max(len(turns) - 1, 0), *users})
    counts: dict[int, int] = {}

    def fits(k: int) -> bool:
        counts[k] = count_tokens((*system, *turns[starts[k] :]))
        return counts[k] <= budget

    if fits(0):
        return Fitted((*system, *turns), counts[0], 0)
    last = len(starts) - 1
    if not fits(last):
        raise ContextOverflow(counts[last])
    low, high = 0, last  # fits(high) is true, fits(low) is false
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    start = starts[high]
    return Fitted((*system, *turns[start:]), counts[high], start)
