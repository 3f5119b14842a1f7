"""Gateway metrics: per-stage latency, time to first audio, turns and errors by stage."""

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

STAGE_SECONDS = Histogram(
    "milo_gateway_stage_seconds",
    "Latency of each stage of a turn (stt_final, translate_in, llm_first_token, "
    "first_sentence, translate_out, tts_first_audio)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
FIRST_AUDIO_SECONDS = Histogram(
    "milo_gateway_first_audio_seconds",
    "End of speech (or text received) to the first reply audio sent",
    buckets=LATENCY_BUCKETS,
)
TURN_SECONDS = Histogram(
    "milo_gateway_turn_seconds", "End of speech to end of turn", buckets=LATENCY_BUCKETS
)
TURNS = Counter("milo_gateway_turns", "Turns ended, by reason", ["reason"])
TURN_ERRORS = Counter(
    "milo_gateway_turn_errors", "Turns failed, by stage and status code", ["stage", "code"]
)
BARGE_INS = Counter("milo_gateway_barge_ins", "Replies cut short by the user")
SESSIONS = Gauge("milo_gateway_sessions_active", "Open Converse streams")
DEPENDENCY_UP = Gauge(
    "milo_gateway_dependency_up", "1 while the dependency's health is SERVING", ["dependency"]
)
UNSPOKEN_SENTENCES = Counter(
    "milo_gateway_unspoken_sentences",
    "Reply sentences skipped by the voice: nothing_to_say (only emoji, symbols or "
    "punctuation) or tts_refused (TTS answered INVALID_ARGUMENT); the rest is spoken",
    ["reason"],
)
