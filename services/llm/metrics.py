"""The LLM service's own Prometheus metrics (the runtime adds request counts and latency).

Continuous batching shows in `milo_llm_batch_sequences` (replies per decoding step),
`milo_llm_queue_wait_seconds` (waiting for a free sequence) and
`milo_llm_sequence_tokens_per_second` (each reply's own speed inside the batch).

`milo_llm_completion_tokens_total` counts every token generated, cancelled generations
included: it is how a test (or an operator) sees that a cancelled reply stopped at once.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)
RATE_BUCKETS = (1, 2.5, 5, 10, 20, 30, 40, 60, 80, 100, 150, 250, 500, 1000, 5000)

PROMPT_TOKENS = Counter(
    "milo_llm_prompt_tokens", "Prompt tokens processed, by backend", ["backend"]
)
COMPLETION_TOKENS = Counter(
    "milo_llm_completion_tokens",
    "Tokens generated (cancelled replies included), by backend",
    ["backend"],
)
REPLIES = Counter(
    "milo_llm_replies",
    "Replies finished, by backend and finish reason",
    ["backend", "finish_reason"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "milo_llm_time_to_first_token_seconds",
    "From receipt of the request to the first text",
    ["backend"],
    buckets=TTFT_BUCKETS,
)
TOKENS_PER_SECOND = Histogram(
    "milo_llm_tokens_per_second",
    "Decode speed of each reply",
    ["backend"],
    buckets=RATE_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "milo_llm_queue_wait_seconds",
    "Time a request waited for the local model",
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("milo_llm_queue_depth", "Requests waiting for the local model")
GENERATING = Gauge("milo_llm_generating", "Replies the local model is generating now")
ACTIVE_SEQUENCES = Gauge(
    "milo_llm_active_sequences", "KV-cache sequences in use (continuous batching)"
)
BATCH_SEQUENCES = Histogram(
    "milo_llm_batch_sequences",
    "Replies advanced by one decoding step (the batch size)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
BATCH_TOKENS = Histogram(
    "milo_llm_batch_tokens",
    "Tokens evaluated by one decoding step (replies and prompts)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
SEQUENCE_WAIT = Histogram(
    "milo_llm_sequence_wait_seconds",
    "From a request reaching the model to its joining the running batch",
    buckets=LATENCY_BUCKETS,
)
SEQUENCE_TOKENS_PER_SECOND = Histogram(
    "milo_llm_sequence_tokens_per_second",
    "Decode speed of each reply inside the batch (tokens after the first, per second)",
    buckets=RATE_BUCKETS,
)
PREFIX_REUSED_TOKENS = Counter(
    "milo_llm_prefix_reused_tokens",
    "Prompt tokens found in a sequence's KV cache and not evaluated again",
)
PREFIX_SHARED_TOKENS = Counter(
    "milo_llm_prefix_shared_tokens",
    "Prompt tokens copied from another sequence's KV cache (llama_memory_seq_cp) and not "
    "evaluated again",
)
TRIMMED_MESSAGES = Counter(
    "milo_llm_trimmed_messages", "Messages dropped from conversations to fit the context"
)
CLOUD_FALLBACKS = Counter(
    "milo_llm_cloud_fallbacks",
    "Replies that fell back to the local model, by reason (error, timeout, unreachable)",
    ["reason"],
)
