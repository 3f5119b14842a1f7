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
    word: str
    start_ms: int
    end_ms: int
    probability: float


class Segment(BaseModel):
    text: str
    start_ms: int
    end_ms: int
    avg_logprob: float
    no_speech_prob: float
    words: list[Word] = Field(description="empty when word timings were not asked for")


class Transcription(BaseModel):
    text: str
    language: str = Field(description="ISO 639-1 code of the language transcribed")
    duration_ms: int = Field(description="length of the audio received")
    processing_ms: float = Field(description="server time spent recognizing")
    segments: list[Segment]


class TranslateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=100_000, examples=["Salama, manao ahoana ianao?"])
    source: str = LanguageCode
    target: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$", examples=["fr"])
    beam_size: int | None = Field(None, ge=1, le=16, description="default: the server's")


class TranslateOut(BaseModel):
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
    code: str = Field(examples=["INVALID_ARGUMENT"])
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    services: dict[str, str] = Field(description="each dependency's health status")
    not_ready: list[str] = Field(default_factory=list)


class NotReady(Readiness):
    error: ErrorDetail
