"""Tier 1: the continuous batching policy (which sequence a request takes, what goes into
the next decoding step, which requests a burst gathers into its first step)."""

from __future__ import annotations

import collections
import queue
from dataclasses import dataclass, field

from services.llm.batching import Slot, common_prefix, pick_slot, pick_source, plan_step
from services.llm.llama_batch import BURST_GAP_S, BatchScheduler


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_the_free_slot_with_the_longest_prefix_is_taken():
    system = [1, 50, 51, 52]
    slots = [Slot(0, [1, 9]), Slot(1, [*system, 7, 8]), Slot(2, [*system, 60, 61], busy=True)]
    slot, keep = pick_slot(slots, [*system, 60, 61, 62])  # slot 2 matches more, but is busy
    assert (slot.seq_id, keep) == (1, 4)


def test_the_last_prompt_token_is_always_evaluated():
    _, keep = pick_slot([Slot(0, [1, 2, 3, 4])], [1, 2, 3])
    assert keep == 2  # its logits give the first token of the reply


def test_ties_go_to_the_lowest_sequence_and_no_free_slot_gives_none():
    assert pick_slot([Slot(0), Slot(1)], [1, 2])[0].seq_id == 0
    assert pick_slot([Slot(0, busy=True)], [1, 2]) is None


def test_among_equal_free_slots_one_whose_cache_another_holds_is_overwritten_first():
    system = [1, 50, 51]
    unique, copy = Slot(0, [*system, 7, 8]), Slot(1, [*system, 9])
    slots = [unique, copy, Slot(2, [*system, 9, 10], busy=True)]
    assert pick_slot(slots, [*system, 60, 61])[0] is copy  # slot 2 also holds [*system, 9]


def test_a_longer_prefix_held_by_another_sequence_busy_or_not_is_shared():
    system, question = [1, 50, 51, 52], [60, 61]
    taken = Slot(0, [*system, 7])
    busy = Slot(1, [*system, *question, 99], busy=True)
    slots = [taken, busy, Slot(2, [*system])]
    source, n = pick_source(slots, [*system, *question, 62], taken, keep=4)
    assert (source.seq_id, n) == (1, 6)
    # never the whole prompt: its last token is evaluated for the first reply token
    assert pick_source(slots, [*system, *question], taken, keep=4) == (busy, 5)
    # nothing to gain: the taken slot already holds as much
    assert pick_source(slots, [*system, 70, 71], taken, keep=4) is None


@dataclass
class Job:
    pending: list[int] = field(default_factory=list)
    generating: bool = False


def test_every_generating_reply_advances_one_token_and_prompts_share_the_chunk():
    old_prompt, reply, new_prompt, idle = Job([1] * 10), Job([5], True), Job([2] * 10), Job()
    plan = plan_step([old_prompt, reply, new_prompt, idle], prefill_chunk=12)
    assert [(j, n) for j, n in plan] == [(reply, 1), (old_prompt, 10), (new_prompt, 2)]


def test_a_long_prompt_never_holds_back_the_replies_in_flight():
    replies = [Job([i], True) for i in range(8)]
    long_prompt = Job([3] * 5000)
    plan = plan_step([long_prompt, *replies], prefill_chunk=64)
    assert sum(n for j, n in plan if j in replies) == 8
    assert dict((id(j), n) for j, n in plan)[id(long_prompt)] == 64


def test_prefill_first_gives_ending_prompts_a_step_of_their_own():
    reply, short, long_prompt = Job([5], True), Job([2] * 6), Job([3] * 500)
    plan = plan_step([reply, short, long_prompt], prefill_chunk=64, prefill_first=True)
    assert plan == [(short, 6)]  # its first token comes out of this step: the reply waits
    # a prompt that needs more chunks goes with the replies, chunk by chunk
    plan = plan_step([reply, long_prompt], prefill_chunk=64, prefill_first=True)
    assert plan == [(reply, 1), (long_prompt, 64)]
    # without prefill-first (the step before held prompts alone), all advance together
    plan = plan_step([reply, short], prefill_chunk=64)
    assert plan == [(reply, 1), (short, 6)]


class Inbox:
    """The scheduler's inbox, scripted: `arrivals` come one per blocking wait (a request that
    arrives within the gap); every wait is recorded as (block, timeout)."""

    def __init__(self, arrivals: list[object]) -> None:
        self.arrivals, self.waits = list(arrivals), []

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        self.waits.append((block, timeout))
        if block and self.arrivals:
            return self.arrivals.pop(0)
        raise queue.Empty

    def get_nowait(self) -> object:
        return self.get(block=False)


def idle_scheduler(waiting: int, arrivals: int, slots: int = 8) -> tuple[BatchScheduler, Inbox]:
    """A scheduler just woken from idle with `waiting` requests, its thread not started."""
    scheduler = BatchScheduler.__new__(BatchScheduler)
    scheduler._waiting = collections.deque(object() for _ in range(waiting))
    scheduler.slots = [Slot(i) for i in range(slots)]
    scheduler._closing = False
    scheduler._inbox = inbox = Inbox([object() for _ in range(arrivals)])  # type: ignore[assignment]
    return scheduler, inbox


def test_a_lone_request_starts_at_once_without_waiting_for_company():
    scheduler, inbox = idle_scheduler(waiting=1, arrivals=3)
    scheduler._gather()
    assert len(scheduler._waiting) == 1
    assert all(not block for block, _ in inbox.waits)  # it never waited


def test_a_burst_is_gathered_within_the_gap_and_never_beyond_a_full_batch():
    scheduler, inbox = idle_scheduler(waiting=2, arrivals=3)
    scheduler._gather()
    assert len(scheduler._waiting) == 5  # the three stragglers join the first step
    blocking = [timeout for block, timeout in inbox.waits if block]
    assert blocking and all(t is not None and t <= BURST_GAP_S for t in blocking)
    scheduler, inbox = idle_scheduler(waiting=2, arrivals=3, slots=3)
    scheduler._gather()
    assert len(scheduler._waiting) == 3  # a full batch: no more waiting
