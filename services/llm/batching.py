"""Continuous batching policy: which KV-cache sequence a request takes, and which tokens go
into the next decoding step. Pure logic, no llama.cpp (the engine does the decoding).

- Slots: one per llama.cpp sequence. A free slot keeps the tokens its last request left in
  the KV cache, so the next request reuses the longest prefix it shares with them: the
  system prompt (the same for every conversation) and, when the same conversation comes
  back to the slot, its earlier turns. Only the rest of the prompt is evaluated.
- Prefix sharing: when another sequence (busy or free) holds a longer prefix of the prompt
  than the slot taken, that prefix is copied from it (`pick_source`; llama.cpp's
  `llama_memory_seq_cp`, which in a unified KV cache only tags the same cells with one
  more sequence: no copy, no computation) instead of being evaluated again.
- Steps: every request that is generating gets exactly one token per step (all advance
  together, none waits for another's reply to end); prompts being evaluated share at most
  `prefill_chunk` tokens per step, oldest request first, so a long prompt is spread over
  several steps instead of stalling the tokens of the others. A prompt that ends in the
  next step may have that step to itself (prefill-first, see `plan_step`), so that a new
  request's first token does not wait for the tokens of every reply in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Slot:
    """One KV-cache sequence: `cached` are the tokens at positions 0.. that it holds."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    busy: bool = False


def pick_slot(slots: Sequence[Slot], prompt: Sequence[int]) -> tuple[Slot, int] | None:
    """The free slot that shares the longest prefix with `prompt`, and how many of its
    cached tokens can be kept; None when every slot is busy.

    At most len(prompt) - 1 tokens are kept: the last prompt token is always evaluated,
    since its logits give the first token of the reply. Among free slots that keep as
    much, the one whose cache another slot also holds (nothing is lost by overwriting it)
    goes first, then the lowest sequence id.
    """
    best: tuple[Slot, int] | None = None
    best_key: tuple[int, bool] | None = None
    for slot in slots:
        if slot.busy:
            continue
        keep = min(common_prefix(slot.cached, prompt), max(len(prompt) - 1, 0))
        key = (keep, _held_elsewhere(slots, slot))
        if best_key is None or key > best_key:
            best, best_key = (slot, keep), key
    return best


def _held_elsewhere(slots: Sequence[Slot], slot: Slot) -> bool:
    """Whether another slot's cache starts with all of `slot`'s."""
    n = len(slot.cached)
    return any(o is not slot and o.cached[:n] == slot.cached for o in slots)


def pick_source(
    slots: Sequence[Slot], prompt: Sequence[int], taken: Slot, keep: int
) -> tuple[Slot, int] | None:
    """The other slot (busy or free) whose cache holds the longest prefix of `prompt`, when
    that prefix is longer than the `keep` tokens `taken` already holds, and its length
    (at most len(prompt) - 1, as in `pick_slot`); None when no slot beats `taken`."""
    best: tuple[Slot, int] | None = None
    for slot in slots:
        if slot is taken:
            continue
        n = min(common_prefix(slot.cached, prompt), max(len(prompt) - 1, 0))
        if n > (best[1] if best is not None else keep):
            best = (slot, n)
    return best


class Pending(Protocol):
    """What the planner reads of a request: tokens still to feed, and its phase."""

    @property
    def pending(self) -> Sequence[int]:
        """Prompt or sampled tokens still to feed the model."""

    @property
    def generating(self) -> bool:
        """True once the prompt is evaluated: `pending` is the last sampled token."""


P = TypeVar("P", bound=Pending)


def plan_step(
    jobs: Sequence[P], prefill_chunk: int, prefill_first: bool = False
) -> list[tuple[P, int]]:
    """How many tokens of each request go into the next step, given in arrival order.

    Requests that are generating feed their one sampled token; prompts share
    `prefill_chunk` tokens, oldest first. A request with nothing to feed is left out.

    With `prefill_first`, a step where some prompts end (their first reply token comes out
    of it) holds those prompts alone: the generating requests wait one step. This is the
    prefill-first policy of vLLM's default scheduler before chunked prefill (a batch of
    prefills, decodes paused; docs.vllm.ai, "Optimization and Tuning"): on a CPU, where a
    step costs about as much per token as the tokens it holds, a new request's first
    token then costs one short step instead of one shared with every reply in flight.
    Prompts that need several chunks are evaluated with the generating tokens, so a long
    prompt never holds the others back; the scheduler asks for prefill-first only when
    the step before was not one, so replies in flight advance at least every other step.
    """
    plan: list[tuple[P, int]] = [(j, 1) for j in jobs if j.generating and j.pending]
    prompts: list[tuple[P, int]] = []
    budget = prefill_chunk
    for job in jobs:
        if job.generating or not job.pending or budget <= 0:
            continue
        n = min(len(job.pending), budget)
        prompts.append((job, n))
        budget -= n
    ending = [(j, n) for j, n in prompts if n == len(j.pending)]
    if prefill_first and ending:
        return ending
    return plan + prompts
