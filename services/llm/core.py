"""The LLM service's core: one reply, from a validated request to text pieces and a
ChatDone.

- Cloud first, when configured and allowed: the reply streams from the cloud model if its
  first text comes within the budget; if the call fails, hangs or cannot connect before
  that, the local model answers instead. A cloud failure after text was sent cannot be
  taken back: the call ends with UNAVAILABLE.
- Local model: a bounded FIFO queue in front of it (as many generations at once as the
  engine batches, the runtime's Admission), then the conversation is fitted into the
  context (oldest turns dropped), then tokens stream from a model thread (one per
  generation; the engine batches them). Cancellation sets the engine's flag; the slot is
  only given back once the model has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Protocol

from services.llm import metrics
from services.llm.bridge import iterate_in_thread
from services.llm.cloud import CloudError, CloudUnreachable
from services.llm.context import ContextOverflow, Fitted, fit_conversation
from services.llm.domain import (
    ChatDone,
    ChatMessage,
    ChatRequest,
    Defaults,
    Event,
    Finish,
    FinishReason,
    Piece,
    Sampling,
    Timing,
)
from services.llm.engine import ChatEngine, TemplateError
from services.runtime.admission import Admission
from services.runtime.errors import ContextLengthExceeded, InvalidArgument, Unavailable

log = logging.getLogger(__name__)


class CloudModel(Protocol):
    """A cloud chat model (the Anthropic client, or a fake in tests)."""

    model: str

    def stream(
        self, messages: Sequence[ChatMessage], sampling: Sampling
    ) -> AsyncGenerator[Event, None]:
        """Pieces of the reply as they arrive, then one Finish; raises CloudError on failure."""

    async def aclose(self) -> None:
        """Close the client, on the event loop it was used on."""


class LlmCore:
    """Replies over one engine: `load` before use, `close` (and `aclose`, for the cloud
    client) after; see the runtime's `model_service`. `defaults` fill what requests leave
    unset."""

    def __init__(
        self,
        engine: ChatEngine,
        queue: Admission,
        cloud: CloudModel | None = None,
        cloud_first_token_s: float = 1.5,
        defaults: Defaults | None = None,
    ) -> None:
        self.engine, self.queue, self.cloud = engine, queue, cloud
        self.cloud_first_token_s = cloud_first_token_s
        self.defaults = defaults or Defaults(Sampling(), "", engine.context_tokens)
        parallel = getattr(engine, "parallel", 1)  # generations the engine runs at once
        self._model_thread = ThreadPoolExecutor(parallel, thread_name_prefix="llm-model")

    def load(self) -> None:
        """Load the model and warm it up (blocking)."""
        self.engine.load()

    def close(self) -> None:
        """Stop the model thread (after its current work) and free the model."""
        self._model_thread.shutdown(wait=True)
        self.engine.close()

    async def aclose(self) -> None:
        """Close the cloud client, on the event loop it was used on."""
        if self.cloud is not None:
            await self.cloud.aclose()

    async def chat(
        self, request: ChatRequest, received: float
    ) -> AsyncGenerator[Piece | ChatDone, None]:
        """Pieces of the reply, in order, then one ChatDone."""
        timing = Timing(received)
        if self.cloud is not None and request.allow_cloud:
            async with aclosing(self.cloud.stream(request.messages, request.sampling)) as stream:
                first = await self._cloud_start(stream)
                if first is not None:
                    async with aclosing(self._cloud_reply(first, stream, timing)) as replies:
                        async for out in replies:
                            yield out
                    return
        # Every nested stream is closed explicitly (aclosing), so that when the caller goes
        # away the cancel flag is set at once, not whenever the generators are collected.
        async with aclosing(self._local_reply(request, timing)) as replies:
            async for out in replies:
                yield out

    async def _cloud_start(self, stream: AsyncIterator[Event]) -> Event | None:
        """The cloud's first event, or None (and a logged reason) to fall back to local."""
        try:  # asyncio.timeout, not wait_for: see gateway/upstream.py (CPython gh-86296)
            async with asyncio.timeout(self.cloud_first_token_s):
                return await anext(stream)
        except TimeoutError:
            reason, detail = "timeout", f"no text within {self.cloud_first_token_s:.2f}s"
        except CloudUnreachable as exc:
            reason, detail = "unreachable", str(exc)
        except (CloudError, StopAsyncIteration) as exc:
            reason, detail = "error", str(exc) or type(exc).__name__
        metrics.CLOUD_FALLBACKS.labels(reason).inc()
        log.warning(
            "cloud model unavailable (%s: %s); answering with the local model", reason, detail
        )
        return None

    async def _cloud_reply(
        self, first: Event, stream: AsyncIterator[Event], timing: Timing
    ) -> AsyncGenerator[Piece | ChatDone, None]:
        assert self.cloud is not None
        finish: Finish | None = None
        outcome = FinishReason.CANCELLED.value  # unless it finishes or fails
        try:
            event: Event | None = first
            while isinstance(event, Piece):
                timing.first_piece = timing.first_piece or time.monotonic()
                yield event
                event = await anext(stream, None)
            if event is None:
                raise CloudError("the stream ended without a finish")
            finish = event
        except CloudError as exc:
            outcome = "error"
            raise Unavailable(f"the cloud model failed mid-reply: {exc}") from exc
        finally:
            if finish is None:
                metrics.REPLIES.labels("cloud", outcome).inc()
        _record("cloud", finish)
        yield self._done(finish, timing, "cloud", self.cloud.model, trimmed=0)

    async def _local_reply(
        self, request: ChatRequest, timing: Timing
    ) -> AsyncGenerator[Piece | ChatDone, None]:
        finish: Finish | None = None
        trimmed = 0
        async with self.queue.slot() as waited:
            timing.queue_s = waited
            metrics.QUEUE_WAIT.observe(waited)
            async with aclosing(self._local_stream(request)) as events:
                async for event in events:
                    if isinstance(event, Fitted):
                        trimmed = event.dropped
                    elif isinstance(event, Finish):
                        finish = event
                    else:
                        timing.first_piece = timing.first_piece or time.monotonic()
                        yield event
        if finish is None:
            raise RuntimeError("the engine ended without a Finish")
        yield self._done(finish, timing, "local", self.engine.model_id, trimmed)

    async def _local_stream(self, request: ChatRequest) -> AsyncGenerator[Fitted | Event, None]:
        """One job on the model thread: fit the conversation (a Fitted comes first), then
        generate. Pieces that piled up while the caller was busy come as one."""
        stream = iterate_in_thread(
            self._model_thread, lambda cancel: self._fit_and_generate(request, cancel)
        )
        metrics.GENERATING.inc()
        try:
            async with aclosing(stream):
                async for batch in stream:
                    for item in batch:
                        if isinstance(item, Fitted):
                            yield item
                    text = "".join(e.text for e in batch if isinstance(e, Piece))
                    if text:
                        yield Piece(text)
                    for item in batch:
                        if isinstance(item, Finish):
                            yield item
        finally:
            metrics.GENERATING.dec()

    def _fit_and_generate(
        self, request: ChatRequest, cancel: threading.Event
    ) -> Iterator[Fitted | Event]:
        """Runs on the model thread; records the finish even when nobody listens any more."""
        fitted = self._fit(request)
        yield fitted
        for event in self.engine.generate(fitted.messages, request.sampling, cancel):
            if isinstance(event, Finish):
                _record("local", event)
            yield event

    def _fit(self, request: ChatRequest) -> Fitted:
        """Runs on the model thread: count with the chat template, drop the oldest turns."""
        max_tokens = request.sampling.max_tokens
        budget = self.engine.context_tokens - max_tokens
        try:
            fitted = fit_conversation(request.messages, self.engine.count_prompt_tokens, budget)
        except ContextOverflow as exc:
            raise ContextLengthExceeded(
                f"the last message and the system prompt take {exc.needed_tokens} tokens; with "
                f"max_tokens {max_tokens} that exceeds the context of "
                f"{self.engine.context_tokens} tokens: shorten the message or lower max_tokens"
            ) from exc
        except TemplateError as exc:
            raise InvalidArgument(
                f"the model's chat template rejected the conversation: {exc}"
            ) from exc
        if fitted.dropped:
            metrics.TRIMMED_MESSAGES.inc(fitted.dropped)
            log.info("dropped the %d oldest messages to fit the context", fitted.dropped)
        return fitted

    def _done(
        self, finish: Finish, timing: Timing, backend: str, model_id: str, trimmed: int
    ) -> ChatDone:
        timing.finished = time.monotonic()
        done = ChatDone(
            reason=finish.reason,
            prompt_tokens=finish.prompt_tokens,
            completion_tokens=finish.completion_tokens,
            time_to_first_token_ms=timing.time_to_first_token_ms(),
            tokens_per_second=timing.tokens_per_second(finish.completion_tokens),
            queue_ms=timing.queue_s * 1000.0,
            trimmed_messages=trimmed,
            backend=backend,
            model_id=model_id,
        )
        if timing.first_piece is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(backend).observe(done.time_to_first_token_ms / 1e3)
        if done.tokens_per_second > 0:
            metrics.TOKENS_PER_SECOND.labels(backend).observe(done.tokens_per_second)
        return done


def _record(backend: str, finish: Finish) -> None:
    metrics.PROMPT_TOKENS.labels(backend).inc(finish.prompt_tokens)
    metrics.COMPLETION_TOKENS.labels(backend).inc(finish.completion_tokens)
    metrics.REPLIES.labels(backend, finish.reason.value).inc()
