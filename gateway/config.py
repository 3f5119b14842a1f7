"""Gateway settings (env prefix MILO_GATEWAY_, same names as CLI flags)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from gateway.balancing import AddressError, channel_target, first_host
from services.runtime.config import (
    PORTS,
    CommaList,
    ServiceSettings,
    grpc_port_field,
    metrics_port_field,
)


class GatewaySettings(ServiceSettings):
    """The gateway's settings, from MILO_GATEWAY_* variables and the CLI flags of the same
    names; a bad value is refused at start-up (pydantic ValidationError)."""

    model_config = SettingsConfigDict(env_prefix="MILO_GATEWAY_")

    port: int = grpc_port_field("gateway")
    metrics_port: int = metrics_port_field("gateway")
    max_concurrency: int = Field(64, ge=1, description="conversations and calls served at once")
    # Each address: host:port, dns:///name:port (every replica the name resolves to, e.g.
    # a headless Service) or a comma-separated list of IP host:port (gateway/balancing.py).
    stt_address: str = Field(
        f"127.0.0.1:{PORTS['stt'][0]}",
        description="STT service host:port, dns:///name:port or a list of IP host:port",
    )
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

    # The HTTP bridge (REST, OpenAI-compatible routes, WebSocket, web page), same process.
    http_enabled: bool = Field(True, description="serve the HTTP bridge and the web page")
    http_host: str | None = Field(None, description="HTTP address (default: the gRPC host)")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    cors_origins: CommaList = Field(
        default_factory=list,
        description="origins allowed to call the HTTP API from a browser ('*' for any); "
        "the page served by the gateway itself needs none",
    )
    max_request_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, le=1024**3, description="largest HTTP request body (413)"
    )
    body_read_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="longest wait for the next piece of an HTTP request "
        "body; past it the request gets 408 and the connection is closed, so a slow or broken "
        "client cannot hold a worker",
    )
    max_text_chars: int = Field(
        10_000, ge=1, le=1_000_000, description="longest text in an HTTP request (400)"
    )
    stt_metrics_address: str | None = Field(
        None,
        description="host:port of the STT service's /metrics, for the status page "
        "(default: its gRPC host and default metrics port)",
    )
    translate_metrics_address: str | None = Field(None)
    llm_metrics_address: str | None = Field(None)
    tts_metrics_address: str | None = Field(None)

    @field_validator("stt_address", "translate_address", "llm_address", "tts_address")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        """Refuse at start-up an address gRPC could not use (e.g. a list of host names)."""
        try:
            channel_target(value)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return value

    def metrics_address(self, name: str) -> str:
        """Where the status page reads a service's metrics."""
        given = getattr(self, f"{name}_metrics_address")
        if given:
            return str(given)
        host = first_host(str(getattr(self, f"{name}_address")))
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{PORTS[name][1]}"

    @property
    def http_address(self) -> tuple[str, int]:
        """(host, port) the HTTP bridge listens on."""
        return (self.http_host or self.host, self.http_port)
