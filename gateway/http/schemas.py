"""Request and response bodies of the native /v1 routes (they document /docs too)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LanguageCode = Field(
    pattern=r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$",
    examples=["mg"],
    description="ISO 639-1 ('mg', 'fr', 'en') or the model's code ('plt_Latn')",
)


class Word(BaseModel):
    """One recognized word; times in ms from the start of the audio, probability in [0, 1]."""

    word: str
    start_ms: int
    end_ms: int
    probability: float


class Segment(BaseModel):
    """One segment of a transcription; times in ms from the start of the audio,
    `avg_logprob` and `no_speech_prob` as the model gives them."""

    text: str
    start_ms: int
    end_ms: int
    avg_logprob: float
    no_speech_prob: float
    words: list[Word] = Field(description="empty when word timings were not asked for")


class Transcription(BaseModel):
    """The text of a recording, with its segments."""

    text: str
    language: str = Field(description="ISO 639-1 code of the language transcribed")
    duration_ms: int = Field(description="length of the audio received")
    processing_ms: float = Field(description="server time spent recognizing")
    segments: list[Segment]


class TranslateIn(BaseModel):
    """A text to translate from `source` to `target`."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=100_000, examples=["Salama, manao ahoana ianao?"])
    source: str = LanguageCode
    target: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$", examples=["fr"])
    beam_size: int | None = Field(None, ge=1, le=16, description="default: the server's")


class TranslateOut(BaseModel):
    """A translation, with the model's language codes and token counts; times in ms."""

    text: str
    source: str
    target: str
    source_model_code: str
    target_model_code: str
    input_tokens: int
    output_tokens: int
    truncated: bool = Field(description="the length or repetition guard cut the output short")
    processing_ms: float


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class ChatIn(BaseModel):
    """A conversation for the LLM; unset knobs take the server's defaults."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1000)
    repeat_penalty: float | None = Field(None, ge=1, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    stop: list[str] = Field(default_factory=list, max_length=8)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    allow_cloud: bool | None = Field(None, description="default: true when configured")


class SpeakIn(BaseModel):
    """A text to speak; unset knobs take the server's defaults."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000, examples=["Manao ahoana ianao?"])
    voice: str | None = Field(None, max_length=100, description="default: the server's")
    speed: float | None = Field(None, ge=0.5, le=2.0, description="1.0 is normal")
    sample_rate_hz: int | None = Field(None, ge=8000, le=48000, description="default: model's")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    format: Literal["wav", "pcm"] = Field(
        "wav", description="wav: a streamed WAV file; pcm: raw s16le mono"
    )


class ErrorDetail(BaseModel):
    """What failed: a gRPC status name (or an HTTP one such as REQUEST_TOO_LARGE)
    and a message for people."""

    code: str = Field(examples=["INVALID_ARGUMENT"])
    message: str


class ErrorBody(BaseModel):
    """The body of every error on the native routes."""

    error: ErrorDetail


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether every service is SERVING, and each one's health status by name."""

    ready: bool
    services: dict[str, str] = Field(description="each dependency's health status")
    not_ready: list[str] = Field(default_factory=list)


class NotReady(Readiness):
    """The 503 body of /readyz: the services not SERVING, and an UNAVAILABLE error."""

    error: ErrorDetail
