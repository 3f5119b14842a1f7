"""Tier 3 (in process): continuous batching in LlamaEngine on the demo GGUF.

Replies are compared with the same requests run alone, greedy. To know for sure that
requests run together (not one after the other by chance of thread timing), a "holder"
request blocks the scheduler thread inside its first event until every request of the test
has been submitted; it is cancelled there, so it leaves at the next step, the one the others
join. Events are recorded on the scheduler thread, so their order is the order of the steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.llm.domain import ChatMessage, Event, Finish, FinishReason, Piece, Role, Sampling
from services.llm.llama_engine import LlamaEngine

SYSTEM = ChatMessage(Role.SYSTEM, "Tu es Milo.")
QUESTIONS = ("Manao ahoana?", "Inona no vaovao?", "Aiza ianao?", "Firy taona ianao?")
DEADLINE_S = 60


def greedy(max_tokens: int = 24) -> Sampling:
    return Sampling(temperature=0.0, max_tokens=max_tokens)


def conversation(question: str) -> tuple[ChatMessage, ...]:
    return (SYSTEM, ChatMessage(Role.USER, question))


@pytest.fixture(scope="module")
def engine(demo_gguf: Path):
    engine = LlamaEngine(demo_gguf, context_tokens=512, threads=1, parallel=4, prefill_chunk=32)
    engine.load()
    yield engine
    engine.close()


class Reply:
    """One reply's events as the scheduler thread emits them, in a log shared by all."""

    def __init__(
        self,
        name: str,
        log: list[tuple[str, Event]],
        on_event: Callable[[Reply, Event], None] | None = None,
    ) -> None:
        self.name, self.log, self.on_event = name, log, on_event
        self.cancel, self.done = threading.Event(), threading.Event()
        self.pieces: list[str] = []
        self.finish: Finish | None = None
        self.seq_id: int | None = None
        self.job: Any = None

    def emit(self, event: Event | BaseException) -> None:
        assert not isinstance(event, BaseException), event
        self.log.append((self.name, event))
        if isinstance(event, Piece):
            self.pieces.append(event.text)
        else:
            self.finish = event
        if self.on_event is not None:
            self.on_event(self, event)
        if self.finish is not None:
            self.done.set()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def wait(self) -> Finish:
        assert self.done.wait(DEADLINE_S), f"{self.name} did not finish"
        assert self.finish is not None
        return self.finish


def start(
    engine: LlamaEngine, reply: Reply, messages: tuple[ChatMessage, ...], sampling: Sampling
) -> Reply:
    prompt = engine._prompt(messages)
    job = engine.submit(prompt, sampling, reply.cancel, reply.emit, sampling.max_tokens)
    reply.job = job
    return reply


def alone(engine: LlamaEngine, messages: tuple[ChatMessage, ...], sampling: Sampling) -> str:
    out = start(engine, Reply("alone", []), messages, sampling)
    out.wait()
    return out.text


def together(
    engine: LlamaEngine,
    log: list[tuple[str, Event]],
    replies: list[tuple[Reply, tuple[ChatMessage, ...], Sampling]],
) -> None:
    """Start `replies` so that they all join the batch at the same step."""
    release = threading.Event()

    def hold(reply: Reply, event: Event) -> None:
        if isinstance(event, Piece) and not reply.cancel.is_set():
            reply.cancel.set()  # leaves at the next step
            assert release.wait(DEADLINE_S)

    holder = start(engine, Reply("holder", log, hold), conversation("Salama"), greedy(50))
    for reply, messages, sampling in replies:
        start(engine, reply, messages, sampling)
    release.set()
    holder.wait()


def batched_steps() -> float:
    """Decoding steps so far that advanced more than one reply."""
    total = REGISTRY.get_sample_value("milo_llm_batch_sequences_count") or 0.0
    single = REGISTRY.get_sample_value("milo_llm_batch_sequences_bucket", {"le": "1.0"}) or 0.0
    return total - single


def test_four_concurrent_replies_are_the_replies_alone(engine):
    expected = [alone(engine, conversation(q), greedy()) for q in QUESTIONS]
    before, log = batched_steps(), []
    replies = [Reply(q, log) for q in QUESTIONS]
    together(
        engine,
        log,
        [(r, conversation(q), greedy()) for r, q in zip(replies, QUESTIONS, strict=True)],
    )
    finishes = [r.wait() for r in replies]
    assert [r.text for r in replies] == expected
    assert all(f.reason is FinishReason.LENGTH and f.completion_tokens == 24 for f in finishes)
    assert batched_steps() - before >= 23  # they did run together


def test_a_cancelled_reply_leaves_at_once_the_others_go_on_and_its_sequence_is_reused(engine):
    keep = conversation(QUESTIONS[0])
    expected = alone(engine, keep, greedy(40))
    expected_late = alone(engine, conversation(QUESTIONS[3]), greedy())
    log: list[tuple[str, Event]] = []
    late = Reply("late", log, lambda r, e: r.seq_id or setattr(r, "seq_id", r.job.slot.seq_id))

    def cancel_at_two(reply: Reply, event: Event) -> None:
        if isinstance(event, Piece) and len(reply.pieces) == 2:
            reply.seq_id = reply.job.slot.seq_id
            reply.cancel.set()  # on the scheduler thread, between two steps
        if isinstance(event, Finish):  # every other sequence is busy: only this one frees
            start(engine, late, conversation(QUESTIONS[3]), greedy())

    kept, cancelled = Reply("kept", log), Reply("cancelled", log, cancel_at_two)
    fillers = [
        (Reply(f"filler{i}", log), conversation(q), greedy(40))
        for i, q in enumerate(QUESTIONS[1:3])
    ]
    together(engine, log, [(kept, keep, greedy(40)), (cancelled, keep, greedy(200)), *fillers])
    finish = cancelled.wait()
    assert finish.reason is FinishReason.CANCELLED
    assert finish.completion_tokens == 2  # the flag was read before the next token
    assert late.wait().reason is FinishReason.LENGTH and late.text == expected_late
    assert late.seq_id == cancelled.seq_id
    assert kept.wait().completion_tokens == 40 and kept.text == expected
    names = [name for name, _ in log]
    assert names.index("late") < len(names) - 1 - names[::-1].index("kept")


def test_a_request_arriving_mid_reply_starts_before_it_ends_its_prompt_in_chunks(engine):
    log: list[tuple[str, Event]] = []
    long_question = " ".join(["Manao ahoana ianao ry namana?"] * 12)
    newcomer = Reply("new", log)
    prompt_tokens = len(engine._prompt(conversation(long_question)))
    assert prompt_tokens > 3 * engine.prefill_chunk

    def newcomer_arrives(reply: Reply, event: Event) -> None:
        if isinstance(event, Piece) and len(reply.pieces) == 5:
            start(engine, newcomer, conversation(long_question), greedy(5))

    first = start(
        engine, Reply("first", log, newcomer_arrives), conversation(QUESTIONS[1]), greedy(150)
    )
    assert newcomer.wait().completion_tokens == 5
    assert first.wait().completion_tokens == 150
    names = [name for name, _ in log]
    first_new = names.index("new")
    assert first_new < names.index("first", first_new)  # before the long reply ended
    # While the newcomer's prompt was evaluated, chunk by chunk, the reply kept going; only
    # the last chunk, the step that gives the newcomer's first token, was its alone.
    steps_of_prompt = -(-prompt_tokens // engine.prefill_chunk)
    first_between = names[names.index("first", 0) : first_new].count("first")
    assert first_between >= 5 + steps_of_prompt - 2


def test_a_new_request_gets_its_first_token_alone_but_never_starves_the_replies(engine):
    log: list[tuple[str, Event]] = []
    chain = [Reply(f"new{i}", log) for i in range(8)]

    def next_arrives(reply: Reply, event: Event) -> None:
        # Each newcomer, once answered, brings the next: a new prompt at every step.
        if isinstance(event, Finish) and reply is not chain[-1]:
            following = chain[chain.index(reply) + 1]
            start(engine, following, conversation(QUESTIONS[len(following.name) % 4]), greedy(1))

    for reply in chain[:-1]:
        reply.on_event = next_arrives

    def first_arrives(reply: Reply, event: Event) -> None:
        if isinstance(event, Piece) and len(reply.pieces) == 3:
            start(engine, chain[0], conversation(QUESTIONS[2]), greedy(1))

    first = start(
        engine, Reply("first", log, first_arrives), conversation(QUESTIONS[1]), greedy(60)
    )
    assert chain[-1].wait().completion_tokens == 1
    assert first.wait().completion_tokens == 60
    names = [name for name, _ in log]
    # The first newcomer's token came in the step right after it arrived, alone ...
    at = names.index("new0")
    assert names[at - 1] == "first" and names[at + 1] == "new0"  # its Piece, then its Finish
    # ... and while a newcomer came at every step, the reply still advanced every other
    # step: between two of its tokens, at most two newcomers were answered.
    span = names[at : names.index("new7")]
    gaps = " ".join(span).split("first")
    assert len(gaps) >= 4 and all(len(set(gap.split())) <= 2 for gap in gaps), span


def test_generate_from_threads_and_usage(engine):
    expected = alone(engine, conversation(QUESTIONS[2]), greedy())
    results: list[tuple[str, Finish]] = []

    def run() -> None:
        pieces, finish = [], None
        for event in engine.generate(conversation(QUESTIONS[2]), greedy(), threading.Event()):
            if isinstance(event, Piece):
                pieces.append(event.text)
            else:
                finish = event
        assert finish is not None
        results.append(("".join(pieces), finish))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    prompt = engine.count_prompt_tokens(conversation(QUESTIONS[2]))
    assert results == [(expected, Finish(FinishReason.LENGTH, prompt, 24))] * 3
