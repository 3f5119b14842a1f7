"""What every load-test target gives the runner, and what the runner gives a target.

A target knows one service's API: how to make its payloads, how to make one request, and
what "time to first result" means for it (first partial, first token, first audio chunk).
It reports timings through a `Probe`; a failure is a `grpc.aio.AioRpcError` (the status
code is recorded) or an `InBandError` (a failure the service reports inside a successful
stream, such as a gateway turn error).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

TARGETS = {
    "stt": "services.loadtest.stt:SttTarget",
    "translate": "services.loadtest.translate:TranslateTarget",
    "llm": "services.loadtest.llm:LlmTarget",
    "tts": "services.loadtest.tts:TtsTarget",
    "gateway": "services.loadtest.gateway:GatewayTarget",
}


class InBandError(Exception):
    """A failure reported inside a stream that itself ended OK (e.g. a gateway TurnError)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Probe:
    """Timings of one request in flight, filled in by the target."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.first_s: float | None = None
        self.spans: dict[str, float] = {}
        self.units = 0.0

    def first(self) -> None:
        """The first result arrived (only the first call counts)."""
        if self.first_s is None:
            self.first_s = time.monotonic() - self.start

    def span(self, name: str, seconds: float) -> None:
        """Record a named duration in seconds."""
        self.spans[name] = seconds

    def add_units(self, amount: float) -> None:
        """Add to the units the request produced (tokens, seconds of audio, ...)."""
        self.units += amount


@dataclass(frozen=True)
class TargetOptions:
    """Request settings from the command line. None: the server's default."""

    language: str | None = None  # stt / gateway: the spoken language
    source: str = "mg"  # translate, for plain-text payloads
    target: str = "fr"
    max_tokens: int | None = None  # llm (and the gateway's LLM)
    voice: str | None = None  # tts voice
    audio_pace: float = 1.0  # times real time; 0: as fast as possible
    chunk_ms: int = 100
    tail_silence_ms: int = 800
    speech_rate_hz: int = 16_000
    unary: bool = False  # stt: Recognize instead of StreamingRecognize
    text_input: bool = False  # gateway: typed text turns instead of speech
    text_output: bool = False  # gateway: no speech synthesis
    metadata: tuple[tuple[str, str], ...] = ()
    payload_files: Sequence[Path] = field(default_factory=tuple)


class Target(Protocol):
    """What the runner needs of one service to load it; one class per target in TARGETS."""

    name: str
    first_result: str  # what the first result is, for the table: "first token"
    units: str  # what Probe.units counts ("tokens", "audio s"), or "" for nothing

    async def describe(self) -> str:
        """A one-line description of the server (model id), checked before the run."""
        ...

    async def payloads(self, workdir: Path) -> list[Any]:
        """The payloads to cycle through: the user's files, else the built-in ones."""
        ...

    async def call(self, payload: Any, probe: Probe, deadline_s: float) -> None:
        """Make one request; raise AioRpcError or InBandError when it fails."""
        ...


def make_target(name: str, channel: grpc.aio.Channel, options: TargetOptions) -> Target:
    """The target named `name` ("stt", "translate", ...) on `channel`."""
    module, _, cls = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(channel, options)  # type: ignore[no-any-return]
