"""Settings every service shares. Each service subclasses `ServiceSettings` with its own env
prefix (MILO_STT_, MILO_TRANSLATE_, ...) and fields; the same fields are CLI flags
(`milo serve stt --port 50061 --max-queue 8`). Built once at the entry point, passed down.

A model service (stt, translate, llm, tts) subclasses `ModelServiceSettings`, which adds
what they all have: the model id shown in Describe and the model's place in the models
folder (`model_dir_field`). `Device`, `ComputeType` and `CommaList` are the field types
they share.

Precedence: CLI flag > environment variable > default.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.runtime.model_folder import models_root

__all__ = [
    "PORTS",
    "CommaList",
    "ComputeType",
    "Device",
    "ModelServiceSettings",
    "ServiceSettings",
    "grpc_port_field",
    "metrics_port_field",
    "model_dir_field",
    "models_root",
]

# Default ports (gRPC, metrics). The gateway's HTTP bridge is on 8080 and serves its
# metrics at /metrics there; its gRPC metrics port is 9150.
PORTS = {
    "gateway": (50050, 9150),
    "stt": (50051, 9151),
    "translate": (50052, 9152),
    "llm": (50053, 9153),
    "tts": (50054, 9154),
}


Device = Literal["auto", "cpu", "cuda"]
"""Where a model runs; `auto`: cuda when the engine sees a GPU, else cpu."""

ComputeType = Literal[
    "default",
    "auto",
    "int8",
    "int8_float16",
    "int8_float32",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
]
"""CTranslate2 compute types (stt and translate); `auto`: the fastest the device supports,
`default`: the type the model was saved in."""


def split_commas(value: object) -> object:
    """Accept "a,b,c" (an env variable or a flag) as well as a JSON list."""
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
"""A list of strings given as "a,b,c" or as a JSON list."""


def grpc_port_field(service: str) -> Any:
    """A service's `port` field, defaulting to its port in PORTS."""
    return Field(PORTS[service][0], ge=0, le=65535, description="gRPC port (0: a free one)")


def metrics_port_field(service: str) -> Any:
    """A service's `metrics_port` field, defaulting to its metrics port in PORTS."""
    return Field(PORTS[service][1], ge=0, le=65535, description="Prometheus /metrics port")


def model_dir_field(component: str, what: str) -> Any:
    """A model service's model location, defaulting to `<models folder>/<component>`."""
    return Field(
        default_factory=lambda: models_root() / component,
        description=f"{what} (default: $MILO_MODELS_DIR/{component}, $MILO_MODELS_DIR "
        "defaulting to ./models)",
    )


class ServiceSettings(BaseSettings):
    """Server settings; the subclass sets `env_prefix` and the port defaults."""

    model_config = SettingsConfigDict(
        env_prefix="MILO_",
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_use_class_docs_for_groups=False,
    )

    host: str = Field("0.0.0.0", description="address to listen on")
    port: int = Field(0, ge=0, le=65535, description="gRPC port (0 picks a free one)")
    metrics_host: str = Field("0.0.0.0", description="address for /metrics")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port")
    api_key: SecretStr | None = Field(
        None, description="require this key in 'authorization: Bearer' or 'x-api-key'"
    )
    max_concurrency: int = Field(4, ge=1, le=1024, description="requests served at once")
    max_queue: int = Field(32, ge=0, le=100_000, description="requests waiting, past which 429")
    shutdown_grace_s: float = Field(10.0, ge=0, le=600, description="drain time on SIGTERM")
    # Connection recycling, for clients that balance over replicas (the gateway's
    # round_robin): a connection older than this gets a GOAWAY (gRPC adds +-10 % jitter), so
    # the client re-resolves its address and new replicas get traffic. Calls in flight go on
    # for up to the grace; unset grace: until they end (an STT stream lasts a conversation).
    max_connection_age_s: float | None = Field(
        300.0,
        gt=0,
        le=86_400,
        description="recycle client connections after this long (unset: never)",
    )
    max_connection_age_grace_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="time calls in flight keep on a recycled connection (unset: until they end)",
    )
    max_message_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, le=1024**3, description="largest gRPC message"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def address(self) -> str:
        """host:port the gRPC server binds."""
        return f"{self.host}:{self.port}"

    def connection_options(self) -> list[tuple[str, int]]:
        """grpc server options for `max_connection_age_s` and its grace (milliseconds)."""
        options = []
        if self.max_connection_age_s is not None:
            options.append(("grpc.max_connection_age_ms", int(self.max_connection_age_s * 1000)))
        if self.max_connection_age_grace_s is not None:
            options.append(
                ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace_s * 1000))
            )
        return options


class ModelServiceSettings(ServiceSettings):
    """Settings every model service shares, on top of the server's."""

    model_id: str | None = Field(
        None,
        description="model id shown in Describe (default: the models folder's manifest.json, "
        "else what the model says of itself, else its folder's name)",
    )
