"""Settings of the STT service: env `MILO_STT_*`, or the same names as flags of
`milo serve stt` (`--beam-size 3`, `--vad-min-silence-ms 500`, ...).

Default language: `mg`. When the model is English-only (such as the demo tiny.en) and the
configured default language is not `en`, the service falls back to `en` with a warning at
startup and says so in `Describe.default_language` (choice documented in `core.py`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.config import (
    ComputeType,
    Device,
    ModelServiceSettings,
    grpc_port_field,
    metrics_port_field,
    model_dir_field,
)


class SttSettings(ModelServiceSettings):
    """The STT service: faster-whisper (CTranslate2) with Silero VAD endpointing."""

    model_config = SettingsConfigDict(env_prefix="MILO_STT_")

    port: int = grpc_port_field("stt")
    metrics_port: int = metrics_port_field("stt")

    model_dir: Path = model_dir_field("stt", "faster-whisper CTranslate2 model folder")
    device: Device = Field(
        "auto", description="where the model runs; auto picks cuda when a GPU is visible"
    )
    device_index: int = Field(0, ge=0, le=64, description="GPU index when device is cuda")
    compute_type: ComputeType = Field(
        "auto",
        description="CTranslate2 compute type; 'auto': the fastest the device supports (int8 "
        "on CPU, float16 on most GPUs), 'default': the type the model was saved in",
    )
    cpu_threads: int = Field(0, ge=0, le=256, description="CPU threads per decode (0: auto)")
    num_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="decodes run at once on the one shared model (CTranslate2 workers share "
        "the weights); other decodes wait in the priority queue",
    )
    max_batch: int = Field(
        8,
        ge=1,
        le=64,
        description="finals and Recognize clips with the same options decoded in one "
        "batched model call (1: no batching)",
    )
    batch_window_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="a free model waits up to this long for other streams' finals to "
        "share its next call, only while other streams are open (0: never wait)",
    )
    language: str = Field(
        "mg",
        min_length=2,
        max_length=4,
        pattern=r"^([a-z]{2,3}|auto)$",
        description="ISO 639-1 default language, passed to Whisper; 'auto': Whisper detects it",
    )
    beam_size: int = Field(5, ge=1, le=20, description="default beam size")
    initial_prompt: str | None = Field(None, max_length=2000, description="default prompt")

    vad_threshold: float = Field(0.5, gt=0, lt=1, description="speech probability threshold")
    vad_min_speech_ms: int = Field(250, ge=0, le=10_000, description="speech that starts one")
    vad_min_silence_ms: int = Field(400, ge=32, le=10_000, description="silence that ends one")
    vad_speech_pad_ms: int = Field(200, ge=0, le=2_000, description="audio kept around speech")
    max_utterance_ms: int = Field(
        30_000, ge=1_000, le=30_000, description="an utterance this long is finalized"
    )
    partial_results: bool = Field(True, description="send partial results while speech goes on")
    partial_interval_ms: int = Field(
        1000, ge=100, le=30_000, description="audio between partial results"
    )

    no_speech_threshold: float = Field(
        0.6,
        ge=0,
        le=1,
        description="hallucination guard: a segment above this no-speech "
        "probability is dropped when its avg log prob is also below log_prob_threshold",
    )
    log_prob_threshold: float = Field(-1.0, le=0, description="see no_speech_threshold")
    compression_ratio_threshold: float = Field(
        2.4, gt=1, description="a segment more compressible than this (a loop) is dropped"
    )

    max_audio_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024**3, description="largest Recognize audio, bytes"
    )
    max_audio_ms: int = Field(
        600_000, ge=1_000, le=24 * 3_600_000, description="longest Recognize audio, ms"
    )
