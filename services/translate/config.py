"""Settings of the translate service: env MILO_TRANSLATE_*, or the same names as CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.config import (
    CommaList,
    ComputeType,
    Device,
    ModelServiceSettings,
    grpc_port_field,
    metrics_port_field,
    model_dir_field,
)


class TranslateSettings(ModelServiceSettings):
    """The translate service: NLLB-200 on CTranslate2, with dynamic batching."""

    model_config = SettingsConfigDict(env_prefix="MILO_TRANSLATE_")

    port: int = grpc_port_field("translate")
    metrics_port: int = metrics_port_field("translate")
    # Requests are batched together, so admitting many at once is what feeds the batcher.
    max_concurrency: int = Field(64, ge=1, le=1024, description="requests served at once")
    max_queue: int = Field(256, ge=0, le=100_000, description="requests waiting, past which 429")

    model_dir: Path = model_dir_field(
        "translate", "CTranslate2 NLLB folder (model.bin, sentencepiece.bpe.model)"
    )
    device: Device = Field("auto", description="cpu, cuda, or auto (cuda when there is one)")
    compute_type: ComputeType = Field("auto", description="CTranslate2 compute type")
    threads: int = Field(0, ge=0, le=256, description="CPU threads per batch (0: one per core)")
    # On CPU a batch of 16 is compute-bound: beam 2 costs ~1.3-2x beam 1 there and breaks
    # the "2x a single request" latency goal under load; at batch 1 both cost the same.
    beam_size: int | None = Field(
        None, ge=1, le=16, description="default beam size (default: 2 on GPU, 1 on CPU)"
    )
    max_beam_size: int = Field(8, ge=1, le=16, description="largest beam size a request may ask")

    batch_window_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="after an engine call, wait up to this long (or a tenth of the call, "
        "if longer) for its callers to come back and share the next (0: never)",
    )
    max_engine_batch: int = Field(32, ge=1, le=1024, description="most sentences per engine call")

    max_texts: int = Field(64, ge=1, le=10_000, description="most texts in one request")
    max_text_chars: int = Field(5000, ge=1, le=1_000_000, description="longest text, characters")
    max_sentence_chars: int = Field(
        400, ge=20, le=10_000, description="longer sentences are cut at a clause or a space"
    )
    max_output_ratio: float = Field(
        2.0, gt=0, le=100, description="length guard: at most ratio * input tokens + extra"
    )
    max_output_extra: int = Field(10, ge=0, le=10_000, description="length guard: extra tokens")
    no_repeat_ngram_size: int = Field(
        4, ge=0, le=100, description="never repeat an n-gram of this size (0: off)"
    )
    repetition_penalty: float = Field(1.0, ge=1.0, le=10, description="1: off")

    target_languages: CommaList = Field(
        default_factory=lambda: ["mg", "fr", "en"],
        description="languages offered as targets (empty: every language the model has)",
    )
    restrict_vocab: bool = Field(
        True, description="score only output pieces the target languages can use"
    )
    cache_size: int = Field(2048, ge=0, le=10_000_000, description="phrase cache entries (0: off)")
    cache_max_chars: int = Field(80, ge=1, le=10_000, description="longest sentence cached")

    @model_validator(mode="after")
    def _beam_within_limit(self) -> TranslateSettings:
        if self.beam_size is not None and self.beam_size > self.max_beam_size:
            raise ValueError(f"beam_size {self.beam_size} > max_beam_size {self.max_beam_size}")
        return self
