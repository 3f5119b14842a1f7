"""The translate service's own Prometheus metrics (default registry, prefix milo_translate_)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from services.runtime.metrics import LATENCY_BUCKETS
from services.translate.engine import Output

BATCH_SENTENCES = Histogram(
    "milo_translate_batch_sentences",
    "Sentences per engine call (dynamic batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_CALLERS = Histogram(
    "milo_translate_batch_callers",
    "Requests sharing one engine call",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
BATCH_SECONDS = Histogram(
    "milo_translate_batch_duration_seconds", "Time of one engine call", buckets=LATENCY_BUCKETS
)
BATCH_WAIT = Histogram(
    "milo_translate_batch_wait_seconds",
    "Time a sentence waited for its engine call (queue wait inside the batcher)",
    buckets=(0.0005, 0.001, 0.0025, *LATENCY_BUCKETS),
)
TOKENS = Counter("milo_translate_tokens", "Tokens read and written by the model", ["kind"])
TOKENS_PER_SECOND = Histogram(
    "milo_translate_output_tokens_per_second",
    "Output tokens per second of one engine call",
    buckets=(10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
)
TRUNCATED = Counter(
    "milo_translate_truncated_sentences", "Sentences cut short by the length or loop guard"
)
FAILED_SENTENCES = Counter(
    "milo_translate_failed_sentences",
    "Sentences the engine failed on alone (after retrying their batch without them)",
)
PASSED_THROUGH = Counter(
    "milo_translate_passed_through_segments",
    "Segments with nothing to translate (punctuation, numbers, symbols) returned unchanged",
)
CACHE = Counter("milo_translate_cache_lookups", "Phrase cache lookups", ["result"])


def observe_batch(outputs: Sequence[Output], callers: int, seconds: float) -> None:
    """Record one engine call that served `callers` requests."""
    BATCH_SENTENCES.observe(len(outputs))
    BATCH_CALLERS.observe(callers)
    BATCH_SECONDS.observe(seconds)
    written = sum(o.output_tokens for o in outputs)
    TOKENS.labels("input").inc(sum(o.input_tokens for o in outputs))
    TOKENS.labels("output").inc(written)
    TRUNCATED.inc(sum(o.truncated for o in outputs))
    if seconds > 0:
        TOKENS_PER_SECOND.observe(written / seconds)
