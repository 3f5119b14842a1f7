"""A Realtime session's settings: read from `session.update` (GA or beta shape), written
back in the GA shape (`session.created` / `session.updated`), and turned into the gateway
SessionConfig that runs the conversation.

GA: `{"type": "realtime", "instructions", "output_modalities": ["audio"],
"audio": {"input": {"format", "transcription", "turn_detection"}, "output": {"format",
"voice", "speed"}}, "max_output_tokens"}`. Beta: `{"modalities", "instructions", "voice",
"input_audio_format", "output_audio_format", "input_audio_transcription",
"turn_detection", "speed", "max_response_output_tokens"}`. A key left out keeps its value;
`null` turns transcription or turn detection off.

Turn detection maps onto the STT service's VAD: threshold, prefix_padding_ms ->
speech_pad_ms, silence_duration_ms -> min_silence_ms; a value left unset keeps the STT
default (which session.created reports). `semantic_vad` is served by the same VAD.
With turn detection off the client commits: the audio is buffered until then.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.http.realtime.audio import PCM, AudioFormat, parse_format
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from services.runtime.errors import InvalidArgument

# The STT service's VAD defaults (stt.proto VadConfig), reported when the client sets none.
VAD_DEFAULTS = {"threshold": 0.5, "prefix_padding_ms": 200, "silence_duration_ms": 400}
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # what TTS does; OpenAI's 0.25..1.5 is clamped to it
# Turn detection off: the VAD ends an utterance only after this much silence (the STT
# service's largest), so the client's commit is what ends it.
_HOLD_SILENCE_MS, _HOLD_UTTERANCE_MS = 10_000, 30_000


@dataclass(frozen=True)
class TurnDetection:
    """Realtime turn detection (`server_vad` or `semantic_vad`); `threshold` in [0.01,
    0.99], times in ms; None leaves the STT service's VAD default."""

    type: str = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True

    def describe(self) -> dict[str, Any]:
        """As the GA API writes it, with the STT defaults filled in for unset values."""
        given = {
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }
        values = {k: VAD_DEFAULTS[k] if v is None else v for k, v in given.items()}
        return {
            "type": self.type,
            **values,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
            "idle_timeout_ms": None,
        }


@dataclass(frozen=True)
class RealtimeConfig:
    """One Realtime session's settings (immutable: `updated` returns a new one); `id` is
    "sess_" and 20 hex digits, `speed` already clamped to what TTS does (0.5-2.0), and
    `turn_detection` None means the client commits its turns."""

    id: str = field(default_factory=lambda: f"sess_{uuid.uuid4().hex[:20]}")
    model: str = "milo"
    instructions: str | None = None
    voice: str = "alloy"
    speed: float = 1.0
    text_only: bool = False
    input_format: AudioFormat = PCM
    output_format: AudioFormat = PCM
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription: dict[str, Any] | None = None
    max_output_tokens: int | None = None

    # ---- in ---------------------------------------------------------------------------

    def updated(self, session: object) -> RealtimeConfig:
        """This config with `session` (GA or beta) applied; InvalidArgument if it is bad
        (then nothing of it is applied)."""
        if not isinstance(session, dict):
            raise InvalidArgument("session must be an object")
        new = self
        audio = _object(session.get("audio"), "session.audio")
        inp = _object(audio.get("input"), "session.audio.input")
        out = _object(audio.get("output"), "session.audio.output")
        if "instructions" in session:
            new = replace(new, instructions=_text(session["instructions"], "instructions"))
        if "model" in session and isinstance(session["model"], str):
            new = replace(new, model=session["model"][:200])
        for key in ("output_modalities", "modalities"):
            if key in session:
                new = replace(new, text_only=_text_only(session[key], f"session.{key}"))
        for value, where in (
            (inp.get("format"), "session.audio.input.format"),
            (session.get("input_audio_format"), "session.input_audio_format"),
        ):
            if value is not None:
                new = replace(new, input_format=parse_format(value, where))
        for value, where in (
            (out.get("format"), "session.audio.output.format"),
            (session.get("output_audio_format"), "session.output_audio_format"),
        ):
            if value is not None:
                new = replace(new, output_format=parse_format(value, where))
        for holder, key in ((out, "voice"), (session, "voice")):
            if key in holder:
                new = replace(new, voice=_voice(holder[key]))
        for holder, key in ((out, "speed"), (session, "speed")):
            if key in holder and holder[key] is not None:
                new = replace(new, speed=_speed(holder[key]))
        for holder, key in ((inp, "turn_detection"), (session, "turn_detection")):
            if key in holder:
                new = replace(new, turn_detection=_turn_detection(holder[key]))
        for holder, key in ((inp, "transcription"), (session, "input_audio_transcription")):
            if key in holder:
                new = replace(new, transcription=_transcription(holder[key]))
        for key in ("max_output_tokens", "max_response_output_tokens"):
            if key in session:
                new = replace(new, max_output_tokens=_max_tokens(session[key]))
        return new

    # ---- out ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The session in the GA shape, as session.created/updated carry it."""
        td = self.turn_detection
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "instructions": self.instructions or "",
            "output_modalities": ["text"] if self.text_only else ["audio"],
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [],
            "tool_choice": "auto",
            "tracing": None,
            "truncation": "auto",
            "audio": {
                "input": {
                    "format": self.input_format.describe(),
                    "transcription": copy.deepcopy(self.transcription),
                    "turn_detection": td.describe() if td else None,
                    "noise_reduction": None,
                },
                "output": {
                    "format": self.output_format.describe(),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
        }

    def gateway_fields(self) -> tuple[object, ...]:
        """What the gateway session is started with: a change needs a new session."""
        return (
            self.instructions,
            self.voice,
            self.speed,
            self.text_only,
            self.input_format,
            self.output_format,
            self.turn_detection,
            self.transcription is not None,
            self.max_output_tokens,
        )

    def session_config(self, voice: str | None) -> gw.SessionConfig:
        """The gateway SessionConfig; `voice` is the TTS voice (None: its default)."""
        td = self.turn_detection
        if td is None:
            vad = stt_pb2.VadConfig(
                min_silence_ms=_HOLD_SILENCE_MS, max_utterance_ms=_HOLD_UTTERANCE_MS
            )
        else:
            vad = stt_pb2.VadConfig(
                threshold=td.threshold,
                speech_pad_ms=td.prefix_padding_ms,
                min_silence_ms=td.silence_duration_ms,
            )
        sampling = llm_pb2.SamplingOptions(max_tokens=self.max_output_tokens)
        return gw.SessionConfig(
            input_format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
                sample_rate_hz=self.input_format.rate,
                channels=1,
            ),
            output_mode=gw.OUTPUT_MODE_TEXT if self.text_only else gw.OUTPUT_MODE_AUDIO_AND_TEXT,
            system_prompt=self.instructions or None,
            sampling=sampling,
            voice=voice,
            output_sample_rate_hz=self.output_format.rate,
            output_encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
            speed=self.speed if self.speed != 1.0 else None,
            vad=vad,
            partial_results=self.transcription is not None,
            barge_in=td is not None and td.interrupt_response,
        )


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be an object")
    return value


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 20_000:
        raise InvalidArgument(f"session.{where} must be a string of at most 20000 characters")
    return value


def _text_only(value: object, where: str) -> bool:
    if not isinstance(value, list) or not value or not set(value) <= {"text", "audio"}:
        raise InvalidArgument(f'{where} must be ["audio"] or ["text"]')
    return "audio" not in value


def _voice(value: object) -> str:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        value = value["id"]
    if not isinstance(value, str) or not 0 < len(value) <= 100:
        raise InvalidArgument("session voice must be a voice name")
    return value


def _speed(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.25 <= value <= 4:
        raise InvalidArgument("session.audio.output.speed must be a number from 0.25 to 4.0")
    return float(min(max(value, MIN_SPEED), MAX_SPEED))


def _max_tokens(value: object) -> int | None:
    if value is None or value == "inf":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise InvalidArgument('max_output_tokens must be 1 to 4096 or "inf"')
    return value


def _turn_detection(value: object) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
        raise InvalidArgument('turn_detection must be null or {"type": "server_vad", ...}')
    if value.get("create_response") is False:
        raise InvalidArgument(
            "turn_detection.create_response false is not supported: Milo "
            "answers every committed turn"
        )
    threshold = value.get("threshold")
    if threshold is not None and (
        not isinstance(threshold, int | float) or not 0.01 <= threshold <= 0.99
    ):
        raise InvalidArgument("turn_detection.threshold must be from 0.01 to 0.99")
    ms = {}
    for key, low, top in (("prefix_padding_ms", 0, 2_000), ("silence_duration_ms", 32, 10_000)):
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not low <= v <= top):
            raise InvalidArgument(f"turn_detection.{key} must be {low} to {top} ms")
        ms[key] = v
    return TurnDetection(
        str(value["type"]),
        threshold,
        ms["prefix_padding_ms"],
        ms["silence_duration_ms"],
        bool(value.get("create_response", True)),
        bool(value.get("interrupt_response", True)),
    )


def _transcription(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(
            'transcription must be null or an object such as {"model": "whisper-1"}'
        )
    return {
        "model": str(value.get("model") or "milo-stt"),
        "language": value.get("language"),
        "prompt": value.get("prompt") or "",
    }
