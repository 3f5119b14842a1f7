"""Bodies of the OpenAI-compatible routes, as OpenAI's API defines them (the fields Milo
does not use are accepted and ignored, so existing clients work unchanged)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.runtime.errors import InvalidArgument

# OpenAI's stock voice names, in a fixed order: voices.py maps them onto the TTS model's.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# Milo's TTS speaks at 0.5x to 2x; OpenAI takes 0.25 to 4.0: the rest is clamped.
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# The LLM service accepts up to 1000 messages and trims the oldest turns to fit its
# context; the HTTP route takes as many (services/llm/convert.py MAX_MESSAGES).
MAX_MESSAGES = 1000


class SpeechIn(BaseModel):
    """The body of POST /v1/audio/speech, as OpenAI defines it
    (https://platform.openai.com/docs/api-reference/audio/createSpeech)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200, examples=["milo-tts"], description="any name")
    input: str = Field(min_length=1, max_length=100_000, examples=["Manao ahoana ianao?"])
    voice: str = Field(
        max_length=100,
        examples=["alloy"],
        description="a voice of the TTS model, 'default', or any OpenAI voice "
        "name (mapped onto the model's voices, see the README)",
    )
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3",
        description="mp3 (default, as OpenAI's), opus (in Ogg), aac (ADTS), flac, "
        "wav (streamed) or pcm (raw s16le, 24 kHz mono as OpenAI's); all streamed",
    )
    speed: float | None = Field(
        None,
        ge=0.25,
        le=4.0,
        description="1.0 is normal; OpenAI's range 0.25 to 4.0 is "
        f"accepted and clamped to what the TTS does, {MIN_SPEED} to {MAX_SPEED}",
    )
    instructions: str | None = Field(None, max_length=10_000, description="ignored")


class ContentPart(BaseModel):
    """A part of a message: only `text` parts are read; the others (image_url,
    input_audio, file) get a 400 that says so."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=100)
    text: str | None = Field(None, max_length=100_000)


class ChatMessageIn(BaseModel):
    """One chat message; `content` is a text or a list of parts (only text parts are
    read); `name` is accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = Field(None)
    name: str | None = Field(None, max_length=200)

    def text(self) -> str:
        """The message's text; InvalidArgument for a part that is not text."""
        if not isinstance(self.content, list):
            return self.content or ""
        for part in self.content:
            if part.type != "text":
                what = "images are" if part.type == "image_url" else f"{part.type} parts are"
                raise InvalidArgument(
                    f"{what} not supported: Milo's language model reads "
                    "text only; send the content as text parts"
                )
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    """With `include_usage`, a streamed completion ends with a chunk that carries the
    usage."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    """The body of POST /v1/chat/completions, as OpenAI defines it
    (https://platform.openai.com/docs/api-reference/chat/create); `max_completion_tokens`
    wins over `max_tokens`."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200, examples=["milo"])
    messages: list[ChatMessageIn] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="the oldest turns are dropped to fit the model's context, as gRPC Chat does",
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    stop: str | list[str] | None = Field(None)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: Literal[1] = Field(1, description="one choice only")


class ResponseMessage(BaseModel):
    """The assistant's reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice of a completion; `logprobs` is always null."""

    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    """Token counts of a completion, from the LLM service."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A whole chat completion, as OpenAI's chat.completion object
    (https://platform.openai.com/docs/api-reference/chat/object)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class TranscriptionOut(BaseModel):
    """The `json` transcription format: the text only."""

    text: str


class VerboseSegment(BaseModel):
    """One segment of a `verbose_json` transcription; times in s. Values the STT
    service does not pass on (`seek`, `tokens`, `temperature`, `compression_ratio`) are 0 or
    empty."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseWord(BaseModel):
    """One word of a `verbose_json` transcription; times in s."""

    word: str
    start: float
    end: float


class VerboseTranscription(BaseModel):
    """The `verbose_json` transcription format, as OpenAI defines it
    (https://platform.openai.com/docs/api-reference/audio/verbose-json-object); `duration` in s."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment]
    words: list[VerboseWord] | None = None


class ModelCard(BaseModel):
    """One model: its id (the service's model id, or its name before it is known),
    `created` as the time the gateway started (Unix s; the same on every call),
    `owned_by` milo-<service>."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """The models behind Milo, one per service."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


def usage(prompt: int, completion: int) -> dict[str, Any]:
    """OpenAI's usage object for `prompt` and `completion` token counts."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
