"""TTS service settings: env MILO_TTS_* or `milo serve tts --flag` (flag > env > default)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.config import (
    Device,
    ModelServiceSettings,
    grpc_port_field,
    metrics_port_field,
    model_dir_field,
)

MAX_SEED = 2**64 - 1


class TtsSettings(ModelServiceSettings):
    """Text to speech: MMS-TTS (VITS) for Malagasy."""

    model_config = SettingsConfigDict(env_prefix="MILO_TTS_")

    port: int = grpc_port_field("tts")
    metrics_port: int = metrics_port_field("tts")
    model_dir: Path = model_dir_field(
        "tts", "transformers VITS folder (config.json, model.safetensors, vocab.json)"
    )
    device: Device = Field("auto", description="torch device; auto: cuda when available")
    dtype: Literal["auto", "float32", "float16"] = Field(
        "auto", description="weights dtype; auto: float16 on a GPU that supports it, else float32"
    )
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0: torch's default)")
    voice: str = Field(
        "mlg", min_length=1, description="voice name (multi-speaker models: <voice>-<speaker>)"
    )
    speaking_rate: float = Field(1.0, ge=0.5, le=2.0, description="default speed, 1.0 normal")
    noise_scale: float = Field(0.667, ge=0.0, le=2.0, description="VITS prior noise scale")
    noise_scale_duration: float = Field(
        0.8, ge=0.0, le=2.0, description="VITS duration noise scale (rhythm variation)"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="default seed: same text, same audio")
    max_batch: int = Field(
        8,
        ge=1,
        le=64,
        description="segments of different requests synthesized in one padded batch (1: none)",
    )
    batch_window_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="a free model waits up to this long for the other open requests' next "
        "segments to share its call (0: never wait; a lone request never waits)",
    )
    max_text_chars: int = Field(
        10_000, ge=1, le=1_000_000, description="longest text accepted, in characters"
    )
    max_chunk_ms: int = Field(200, ge=10, le=2000, description="longest audio chunk sent")
    max_segment_chars: int = Field(
        160,
        ge=20,
        le=2000,
        description="longest piece synthesized at once; longer sentences are cut at clauses",
    )
    sentence_pause_ms: int = Field(200, ge=0, le=5000, description="silence between sentences")
    clause_pause_ms: int = Field(
        80, ge=0, le=5000, description="silence where a long sentence was cut at a clause"
    )
