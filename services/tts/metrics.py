"""The TTS service's own Prometheus metrics (default registry, prefix milo_tts_)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)

DROPPED = Counter(
    "milo_tts_dropped_characters",
    "Characters the voice cannot say, dropped from the text after normalization",
)
FIRST_CHUNK = Histogram(
    "milo_tts_first_chunk_seconds",
    "Time from a request to its first audio chunk",
    buckets=LATENCY_BUCKETS,
)
SEGMENT = Histogram(
    "milo_tts_segment_seconds",
    "Model time to synthesize one segment (a sentence or clause)",
    buckets=LATENCY_BUCKETS,
)
RTF = Histogram(
    "milo_tts_real_time_factor",
    "Processing time over audio duration, per request",
    buckets=RTF_BUCKETS,
)
AUDIO = Counter("milo_tts_audio_seconds", "Audio synthesized, in seconds")


def record_segment(seconds: float, samples: int, sample_rate: int) -> None:
    """Count one segment's model time (seconds) and its audio (`samples` at `sample_rate` Hz)."""
    SEGMENT.observe(seconds)
    AUDIO.inc(samples / sample_rate)


def record_request(processing_s: float, audio_s: float) -> None:
    """Record one request's real-time factor: processing time over audio duration (seconds);
    nothing for an empty one."""
    if audio_s > 0:
        RTF.observe(processing_s / audio_s)


BATCH_SIZE = Histogram(
    "milo_tts_batch_size",
    "Segments (from different requests) synthesized by one model call",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
BATCH_SECONDS = Histogram(
    "milo_tts_batch_seconds", "Time of one batched model call", buckets=LATENCY_BUCKETS
)
QUEUE_WAIT = Histogram(
    "milo_tts_queue_wait_seconds",
    "Time a segment waited for its model call",
    buckets=(0.001, 0.0025, *LATENCY_BUCKETS),
)
