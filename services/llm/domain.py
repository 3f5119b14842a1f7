"""Domain types of the LLM service: what the servicer hands the chat runner, what engines
and the cloud client stream back. No protobuf and no model code here."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    """Who wrote a message, with the names chat templates use."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(enum.Enum):
    """Why a reply ended."""

    STOP = "stop"  # the model ended its reply, or a stop string was met
    LENGTH = "length"  # max_tokens (or the end of the context) was reached
    CANCELLED = "cancelled"  # the caller went away or its deadline passed


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        """The shape chat templates and the Messages API expect."""
        return {"role": self.role.value, "content": self.content}


@dataclass(frozen=True)
class Sampling:
    """Resolved sampling settings: every knob has a value (request, else server default)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.1
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: a fresh random seed per request


@dataclass(frozen=True)
class Defaults:
    """What the server uses for what a request leaves unset."""

    sampling: Sampling
    system_prompt: str
    context_tokens: int


@dataclass(frozen=True)
class ChatRequest:
    """What to reply to, how to sample, and whether the cloud model may answer."""

    messages: tuple[ChatMessage, ...]  # a leading system message, then the turns
    sampling: Sampling
    allow_cloud: bool = True


@dataclass(frozen=True)
class Piece:
    """Text produced since the last piece (whole characters, never part of a stop string)."""

    text: str


@dataclass(frozen=True)
class Finish:
    """The end of a generation, as the backend saw it."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


Event = Piece | Finish


@dataclass(frozen=True)
class ChatDone:
    """What the caller learns at the end of a reply."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float
    tokens_per_second: float
    queue_ms: float
    trimmed_messages: int
    backend: str  # "local" or "cloud"
    model_id: str


@dataclass
class Timing:
    """Clock readings (time.monotonic) of one reply, for TTFT and tokens per second."""

    received: float
    first_piece: float | None = None
    finished: float | None = None
    queue_s: float = 0.0

    def time_to_first_token_ms(self) -> float:
        """Milliseconds from receipt to the first piece; 0 if there was none."""
        if self.first_piece is None:
            return 0.0
        return (self.first_piece - self.received) * 1000.0

    def tokens_per_second(self, completion_tokens: int) -> float:
        """Decode speed: tokens after the first over the time since the first."""
        if self.first_piece is None or self.finished is None or completion_tokens < 2:
            return 0.0
        span = self.finished - self.first_piece
        return (completion_tokens - 1) / span if span > 0 else 0.0
