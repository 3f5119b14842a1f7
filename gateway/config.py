"""Gateway settings (env prefix MILO_GATEWAY_, same names as CLI flags)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.runtime.config import PORTS, ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MILO_GATEWAY_")

    port: int = Field(PORTS["gateway"][0], ge=0, le=65535, description="gRPC port")
    metrics_port: int = Field(PORTS["gateway"][1], ge=0, le=65535, description="/metrics port")
    max_concurrency: int = Field(64, ge=1, description="conversations and calls served at once")
    stt_address: str = Field(f"127.0.0.1:{PORTS['stt'][0]}", description="STT service host:port")
    translate_address: str = Field(f"127.0.0.1:{PORTS['translate'][0]}")
    llm_address: str = Field(f"127.0.0.1:{PORTS['llm'][0]}")
    tts_address: str = Field(f"127.0.0.1:{PORTS['tts'][0]}")
    backend_api_key: SecretStr | None = Field(None, description="key sent to the services")
    default_user_language: str = Field("mg", min_length=2, description="ISO 639-1")
    default_pivot_language: str = Field("fr", min_length=2, description="ISO 639-1")
    # Stage deadlines, in seconds: past them a turn ends with an in-band error naming the stage.
    translate_timeout_s: float = Field(10.0, gt=0, le=600)
    llm_first_token_timeout_s: float = Field(30.0, gt=0, le=600)
    llm_timeout_s: float = Field(120.0, gt=0, le=3600)
    tts_timeout_s: float = Field(30.0, gt=0, le=600)
    stt_timeout_s: float = Field(30.0, gt=0, le=600, description="unary Transcribe deadline")
    unary_retries: int = Field(3, ge=0, le=10, description="retries of idempotent unary calls")
    max_history_turns: int = Field(8, ge=0, le=100)
    max_audio_chunk_bytes: int = Field(256 * 1024, ge=1024, description="largest Converse chunk")
    max_sentence_chars: int = Field(
        160, ge=20, le=2000, description="a run-on sentence is cut at a clause or this length"
    )
