"""Continuous batching on one llama.cpp context: the scheduler thread that owns it.

The context holds `parallel` KV-cache sequences (`n_seq_max`) in one unified cache
(`kv_unified`, as llama.cpp's server and examples/parallel use it): a cell may belong to
several sequences, so a prefix is shared by tagging its cells, and every decoding step is
one forward pass whatever mix of sequences and token counts it holds (with one cache
stream per sequence, llama.cpp splits a batch into micro-batches of equal tokens per
sequence and consecutive sequence ids, several forward passes per step). Requests (`Job`)
arrive from any thread through an inbox; the scheduler thread alone touches the context.
Each step:

1. new requests take a free sequence (the one holding the longest prefix of their prompt,
   see `batching.pick_slot`); the rest of that sequence's cache is removed
   (`llama_memory_seq_rm`); when another sequence, busy or free, holds a longer prefix
   (the system prompt and question of a conversation that is also being answered), that
   prefix is shared with `llama_memory_seq_cp` instead of evaluated again
   (`batching.pick_source`); only the rest of the prompt is left to evaluate;
2. requests whose cancel flag is set (or whose caller went away) leave at once, with a
   CANCELLED finish, and their sequence is free for the next request;
3. one `llama_decode` call evaluates one token of every generating request plus up to
   `prefill_chunk` prompt tokens (`batching.plan_step`): the prompts of requests that
   arrived together are evaluated together, in that same call; a step where prompts end
   holds those prompts alone when the step before held generating tokens (prefill-first:
   a new request's first token costs a short step, not one shared with every reply in
   flight, and replies in flight still advance at least every other step);
4. each request whose logits came out samples its next token with its own sampler chain
   (its own settings and seed), and its text, stop strings and token budget are handled.

A sequence's cache is kept when its request ends: the next request to take it (or to copy
from it) reuses the common prefix (the system prompt at least).

Cancellation: the flag is read before every step, so once it is set at most the token
being computed is finished. Events go to the job's `emit` (Pieces, then one Finish, or the
exception that failed the step).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.llm import metrics
from services.llm.batching import Slot, pick_slot, pick_source, plan_step
from services.llm.domain import Event, Finish, FinishReason, Piece, Sampling
from services.llm.text import ReplyText

log = logging.getLogger(__name__)

MIN_P = 0.05  # llama-cpp-python's default, kept so results match create_chat_completion
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size
# A burst of requests after an idle spell (see BatchScheduler._gather): the next request
# of the burst is waited for at most BURST_GAP_S, the whole burst at most BURST_WINDOW_S.
# Small beside one decoding step (about 4 ms for one token of the 56 MB demo model on 2
# cores, 20-40 ms for Mistral 7B on a GPU), which a late member of the burst would wait.
BURST_GAP_S = 0.001
BURST_WINDOW_S = 0.003


@dataclass(eq=False)
class Job:
    """One reply being generated."""

    prompt: list[int]
    sampling: Sampling
    seed: int
    budget: int  # completion tokens at most (max_tokens, or what the context leaves)
    cancel: threading.Event
    emit: Callable[[Event | BaseException], None]
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # the caller stopped reading
    slot: Slot | None = None
    pending: list[int] = field(default_factory=list)  # tokens to feed at the next steps
    generating: bool = False  # the prompt is evaluated: pending is the last sampled token
    count: int = 0  # completion tokens so far
    first_token_at: float | None = None
    sampler: Any = None
    text: ReplyText = field(init=False)

    def __post_init__(self) -> None:
        self.text = ReplyText(self.sampling.stop)

    @property
    def stopped(self) -> bool:
        """True when the caller stopped reading or cancelled: generation ends at the next step."""
        return self.abandoned or self.cancel.is_set()


def make_sampler(internals: Any, n_vocab: int, s: Sampling, seed: int) -> Any:
    """A sampler chain as llama-cpp-python's `Llama.generate` builds it: repeat penalty over
    the last 64 tokens, then greedy (temperature 0), or top-k, typical, top-p, min-p,
    temperature and a seeded draw."""
    sampler = internals.LlamaSampler()
    sampler.add_penalties(n_vocab, PENALTY_LAST_N, s.repeat_penalty, 0.0, 0.0)
    if s.temperature == 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(s.top_k)
    sampler.add_typical(1.0, 1)
    sampler.add_top_p(s.top_p, 1)
    sampler.add_min_p(MIN_P, 1)
    sampler.add_temp(s.temperature)
    sampler.add_dist(seed)
    return sampler


class BatchScheduler:
    """Owns the llama.cpp context; `submit` jobs from any thread."""

    def __init__(
        self, lib: Any, internals: Any, model: Any, ctx: Any, parallel: int, prefill_chunk: int
    ) -> None:
        self._lib, self._internals, self._model, self._ctx = lib, internals, model, ctx
        self.prefill_chunk = prefill_chunk
        self.slots = [Slot(i) for i in range(parallel)]
        self.steps = 0  # decoding steps so far
        self._memory = lib.llama_get_memory(ctx.ctx)
        self._n_vocab = model.n_vocab()
        self._batch = internals.LlamaBatch(
            n_tokens=prefill_chunk + parallel, embd=0, n_seq_max=1, verbose=False
        )
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._waiting: collections.deque[Job] = collections.deque()
        self._active: list[Job] = []  # in arrival order
        self._closing = False
        self._prefilled_alone = False  # the last step held prompts only, replies waited
        self._thread = threading.Thread(target=self._run, name="llm-batch", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job` for the scheduler thread (any thread may call); its events go to
        `job.emit`. Raises RuntimeError once the model is closed."""
        if self._closing or not self._thread.is_alive():
            raise RuntimeError("the model is closed")
        job.sampler = make_sampler(self._internals, self._n_vocab, job.sampling, job.seed)
        self._inbox.put(job)

    def close(self) -> None:
        """Cancel what is in flight, stop the thread, free the batch."""
        self._inbox.put(None)
        self._thread.join()
        self._batch.close()

    # -- the scheduler thread --------------------------------------------------------------

    def _run(self) -> None:
        failed: BaseException | None = None
        try:
            while not self._closing:
                idle = not self._active and not self._waiting
                self._take_new(block=idle)
                if idle:
                    self._gather()
                self._admit()
                for job in [j for j in self._active if j.stopped]:
                    self._finish(job, FinishReason.CANCELLED)
                if self._active and not self._closing:
                    self._step()
        except BaseException as exc:  # handed to every caller in flight
            log.exception("the batch scheduler failed; replies in flight fail with it")
            failed = exc
        for job in [*self._active, *self._waiting, *self._drain()]:
            if failed is None:
                self._finish(job, FinishReason.CANCELLED)
            else:
                job.emit(failed)
                self._release(job)

    def _gather(self) -> None:
        """Callers answered in the same step come back together: before the first step
        after an idle spell, collect the requests that are being submitted now, so that
        they join that step instead of waiting for it to end and taking the next one.

        A lone request does not wait: the GIL is yielded once (free when no other thread
        wants it) and, if nothing else came, the step starts. Once a second request shows
        a burst, the batching window opens (a dynamic batcher's queue delay, as Triton's
        `max_queue_delay_microseconds`): each further request is waited for at most
        BURST_GAP_S, all of them at most BURST_WINDOW_S, and never beyond a full batch.
        """
        deadline = time.monotonic() + BURST_WINDOW_S
        while len(self._waiting) < len(self.slots):
            before = len(self._waiting)
            if before < 2:
                time.sleep(0)
                self._take_new(block=False)
            else:
                left = max(0.0, deadline - time.monotonic())
                self._take_new(block=True, timeout=min(BURST_GAP_S, left))
            if len(self._waiting) == before or time.monotonic() >= deadline:
                self._take_new(block=False)  # what came while this thread waited for the GIL
                return

    def _drain(self) -> list[Job]:
        jobs: list[Job] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return jobs
            if item is not None:
                jobs.append(item)

    def _take_new(self, block: bool, timeout: float | None = None) -> None:
        try:
            item = self._inbox.get(block=block, timeout=timeout)
        except queue.Empty:
            return
        while True:
            if item is None:
                self._closing = True
            else:
                self._waiting.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _admit(self) -> None:
        """Waiting jobs take free sequences, first come first served."""
        while self._waiting:
            job = self._waiting[0]
            if job.stopped:
                self._waiting.popleft()
                self._finish(job, FinishReason.CANCELLED)
                continue
            picked = pick_slot(self.slots, job.prompt)
            if picked is None:
                return
            self._waiting.popleft()
            slot, keep = picked
            source = pick_source(self.slots, job.prompt, slot, keep)
            if source is not None:
                keep = 0  # the whole prefix comes from the source
            if not self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
                self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                keep = 0
            del slot.cached[keep:]
            if source is not None:
                donor, keep = source
                self._lib.llama_memory_seq_cp(self._memory, donor.seq_id, slot.seq_id, 0, keep)
                slot.cached[:] = donor.cached[:keep]
                metrics.PREFIX_SHARED_TOKENS.inc(keep)
            else:
                metrics.PREFIX_REUSED_TOKENS.inc(keep)
            slot.busy, job.slot = True, slot
            job.pending = job.prompt[keep:]
            self._active.append(job)
            metrics.SEQUENCE_WAIT.observe(time.monotonic() - job.arrived)
            metrics.ACTIVE_SEQUENCES.set(len(self._active))

    def _step(self) -> None:
        plan = plan_step(self._active, self.prefill_chunk, not self._prefilled_alone)
        self._prefilled_alone = all(not job.generating for job, _ in plan) and any(
            job.generating for job in self._active
        )
        batch, outputs = self._batch.batch, []
        batch.n_tokens = 0
        for job, n in plan:
            assert job.slot is not None
            start = len(job.slot.cached)
            for k, token in enumerate(job.pending[:n]):
                i = batch.n_tokens
                batch.token[i], batch.pos[i] = token, start + k
                batch.n_seq_id[i], batch.seq_id[i][0] = 1, job.slot.seq_id
                last = k == n - 1 and n == len(job.pending)
                batch.logits[i] = last
                if last:
                    outputs.append((job, i))
                batch.n_tokens += 1
        code = self._lib.llama_decode(self._ctx.ctx, batch)
        if code != 0:
            self._fail(plan, RuntimeError(f"llama_decode returned {code}"))
            return
        self.steps += 1
        metrics.BATCH_SEQUENCES.observe(len(plan))
        metrics.BATCH_TOKENS.observe(batch.n_tokens)
        for job, n in plan:
            assert job.slot is not None
            job.slot.cached.extend(job.pending[:n])
            job.pending = job.pending[n:]
        for job, i in outputs:
            self._on_token(
                job, self._lib.llama_sampler_sample(job.sampler.sampler, self._ctx.ctx, i)
            )

    def _fail(self, plan: list[tuple[Job, int]], exc: BaseException) -> None:
        """A step that failed fails the requests in it; their sequences are wiped."""
        for job, _ in plan:
            assert job.slot is not None
            self._lib.llama_memory_seq_rm(self._memory, job.slot.seq_id, -1, -1)
            job.slot.cached.clear()
            job.emit(exc)
            self._release(job)

    def _on_token(self, job: Job, token: int) -> None:
        if not job.generating:
            job.generating, job.first_token_at = True, time.monotonic()
        if self._lib.llama_vocab_is_eog(self._model.vocab, token):
            self._finish(job, FinishReason.STOP)
            return
        job.count += 1
        piece = job.text.feed(self._model.detokenize([token]))
        if piece:
            job.emit(Piece(piece))
        if job.text.stopped:
            self._finish(job, FinishReason.STOP)
        elif job.count >= job.budget:
            self._finish(job, FinishReason.LENGTH)
        else:
            job.pending = [token]

    def _finish(self, job: Job, reason: FinishReason) -> None:
        tail = job.text.finish() if reason is not FinishReason.CANCELLED else ""
        if tail:
            job.emit(Piece(tail))
        job.emit(Finish(reason, len(job.prompt), job.count))
        if job.first_token_at is not None and job.count > 1:
            span = time.monotonic() - job.first_token_at
            if span > 0:
                metrics.SEQUENCE_TOKENS_PER_SECOND.observe((job.count - 1) / span)
        self._release(job)

    def _release(self, job: Job) -> None:
        if job.slot is not None:
            job.slot.busy, job.slot = False, None
        if job in self._active:
            self._active.remove(job)
        if job.sampler is not None:
            job.sampler.close()
            job.sampler = None
        metrics.ACTIVE_SEQUENCES.set(len(self._active))
