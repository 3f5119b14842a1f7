"""Settings of the LLM service: env `MILO_LLM_*`, or the same names as flags of
`milo serve llm` (`--context-tokens 8192`, `--temperature 0.3`, `--stop '["\\n\\n"]'`).

The local model always answers on its own. The cloud model (Anthropic Messages API, e.g.
Claude Haiku) is tried first only when both `cloud_api_key` and `cloud_model` are set.

Queueing: the local model generates `parallel` replies at once (continuous batching, one
KV-cache sequence of `context_tokens` each); `max_queue` more requests may wait for a free
sequence (FIFO), past which RESOURCE_EXHAUSTED. `max_concurrency` bounds the calls handled
at once, waiting and cloud calls included, so it is set well above `parallel`.

Memory: the KV cache holds `parallel * context_tokens` tokens. For Mistral 7B in f16 that
is 128 KiB per token: 8 sequences of 2048 tokens = 2 GiB (see deploy/README.md). It is one
unified cache: a prompt prefix that several sequences share (the system prompt) is held
once, and a new request takes it from any sequence that holds it instead of evaluating it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.config import (
    ModelServiceSettings,
    grpc_port_field,
    metrics_port_field,
    model_dir_field,
)

GGUF_FILE = "model.gguf"

DEFAULT_SYSTEM_PROMPT = (
    "Tu es Milo, un assistant vocal serviable et bienveillant. Réponds toujours en français, "
    "brièvement, en une à trois phrases simples, car ta réponse sera lue à voix haute : pas de "
    "listes, pas de titres, pas de mise en forme, pas d'émojis. Si tu ne sais pas, dis-le."
)


class LlmSettings(ModelServiceSettings):
    """The LLM service: a GGUF chat model on llama.cpp, with an optional cloud model."""

    model_config = SettingsConfigDict(env_prefix="MILO_LLM_")

    port: int = grpc_port_field("llm")
    metrics_port: int = metrics_port_field("llm")
    max_concurrency: int = Field(
        64,
        ge=1,
        le=1024,
        description="calls handled at once, those waiting for the local model included",
    )
    max_queue: int = Field(
        8,
        ge=0,
        le=1000,
        description="calls waiting for a free sequence of the local model, past which "
        "RESOURCE_EXHAUSTED",
    )
    parallel: int = Field(
        8,
        ge=1,
        le=256,
        description="replies the local model generates at once (llama.cpp sequences in one "
        "context, continuous batching)",
    )
    prefill_chunk_tokens: int = Field(
        256,
        ge=16,
        le=8192,
        description="prompt tokens evaluated per decoding step, so that a long prompt does "
        "not stall the tokens of the replies in flight",
    )

    model_path: Path = model_dir_field("llm", f"GGUF file, or a folder holding {GGUF_FILE}")
    context_tokens: int = Field(
        2048,
        ge=128,
        le=131_072,
        description="context window of each sequence (prompt + reply), in tokens",
    )
    gpu_layers: int = Field(-1, ge=-1, le=1000, description="layers on the GPU (-1: all)")
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads (default: llama.cpp's, half the cores)"
    )
    omp_wait_policy: Literal["passive", "active"] = Field(
        "passive",
        description="how llama.cpp's idle OpenMP threads wait: passive sleeps (right when the "
        "CPU is shared with the other services; spinning threads there slow everything 10x "
        "or more), active spins (a little lower latency on a dedicated CPU). An "
        "OMP_WAIT_POLICY set in the environment wins",
    )

    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT,
        min_length=1,
        max_length=8000,
        description="system prompt used when a request brings none",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="default temperature (0: greedy)")
    top_p: float = Field(0.95, gt=0, le=1, description="default nucleus sampling threshold")
    top_k: int = Field(40, ge=0, le=100_000, description="default top-k (0: off)")
    repeat_penalty: float = Field(1.1, ge=1, le=2, description="default repeat penalty")
    max_tokens: int = Field(256, ge=1, le=131_072, description="default reply length limit")
    stop: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="stop strings always applied (a request may add its own)",
    )

    cloud_api_key: SecretStr | None = Field(
        None, description="Anthropic API key; with cloud_model, enables the cloud model"
    )
    cloud_model: str | None = Field(None, description="cloud model, e.g. claude-haiku-4-5")
    cloud_base_url: str = Field(
        "https://api.anthropic.com", pattern=r"^https?://", description="Messages API base URL"
    )
    cloud_first_token_ms: int = Field(
        1500,
        ge=10,
        le=60_000,
        description="fall back to the local model if the cloud has sent no text by then",
    )
    cloud_read_timeout_s: float = Field(
        30.0, gt=0, le=600, description="longest silence of the cloud stream once it answers"
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @model_validator(mode="after")
    def _reply_fits_context(self) -> LlmSettings:
        if self.max_tokens >= self.context_tokens:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) must be below context_tokens "
                f"({self.context_tokens}): the prompt needs room too"
            )
        return self

    @property
    def gguf_path(self) -> Path:
        """The GGUF file itself."""
        return self.model_path / GGUF_FILE if self.model_path.is_dir() else self.model_path

    @property
    def cloud_enabled(self) -> bool:
        """True when both a cloud API key and a cloud model are set."""
        return self.cloud_api_key is not None and bool(self.cloud_model)
