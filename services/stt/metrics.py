"""The STT service's own Prometheus metrics (the runtime counts requests, latency, queue)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)

AUDIO_SECONDS = Counter("milo_stt_audio_seconds", "Audio received, in seconds, by RPC", ["method"])
DECODE_SECONDS = Histogram(
    "milo_stt_decode_seconds",
    "Model time per decode, by kind (recognize, partial, final)",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
REAL_TIME_FACTOR = Histogram(
    "milo_stt_real_time_factor",
    "Decode time / audio duration, by kind",
    ["kind"],
    buckets=RTF_BUCKETS,
)
FINAL_LATENCY = Histogram(
    "milo_stt_final_latency_seconds",
    "Streaming: from the endpointer's end of speech to the final result being ready",
    buckets=LATENCY_BUCKETS,
)
UTTERANCES = Counter("milo_stt_utterances", "Utterances endpointed in streams", ["ended_by"])
HALLUCINATIONS = Counter(
    "milo_stt_hallucinations_dropped", "Segments dropped by the hallucination guard"
)
NO_SPEECH = Counter(
    "milo_stt_no_speech_clips", "Recognize clips in which the VAD heard no speech (not decoded)"
)
DECODE_QUEUE = Gauge("milo_stt_decode_queue", "Decodes waiting for the model")
DECODE_BUSY = Gauge("milo_stt_decode_busy", "Decodes running on the model")
QUEUE_WAIT = Histogram(
    "milo_stt_decode_queue_wait_seconds",
    "Time a decode waited for the model, by priority (urgent: finals and Recognize; "
    "best_effort: partials)",
    ["priority"],
    buckets=(0.001, 0.0025, *LATENCY_BUCKETS),
)
BATCH_SIZE = Histogram(
    "milo_stt_batch_size",
    "Finals and Recognize clips decoded by one batched model call",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
BATCH_ALONE = Counter(
    "milo_stt_batch_decoded_alone",
    "Items of a batch decoded again alone (temperature fallback, audio past one 30 s "
    "window, or the batch failed)",
)
