"""OpenAI's voice names on Milo's TTS voices, for /v1/audio/speech and /v1/realtime.

- `default` (any case) is the TTS model's default voice;
- OpenAI's names, in OpenAI's order (alloy, ash, ballad, coral, echo, fable, nova, onyx,
  sage, shimmer, verse, marin, cedar), go round the model's voices in the order its
  Describe lists them: alloy the first, ash the second, ... wrapping around. A model with
  one voice (MMS-TTS has one per language) speaks every name with it;
- any other name is passed to TTS as it is (a voice of the model, or a 400 from TTS).

The model's voices are asked once (TTS Describe) and kept; if TTS cannot say, an OpenAI
name takes the default voice.
"""

from __future__ import annotations

import logging

from gateway.core import GatewayCore
from gateway.http.openai_schemas import OPENAI_VOICES
from gateway.upstream import UpstreamError
from milo.tts.v1 import tts_pb2

log = logging.getLogger(__name__)


def pick(name: str, voices: list[str]) -> str | None:
    """The TTS voice for `name` among the model's `voices` (None: the model's default)."""
    lowered = name.strip().lower()
    if lowered == "default":
        return None
    if lowered not in OPENAI_VOICES:
        return name
    if not voices:
        return None
    return voices[OPENAI_VOICES.index(lowered) % len(voices)]


class VoiceMap:
    """Voice names to TTS voices (see `pick`), the model's voices read once via `core`."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self._voices: list[str] | None = None

    async def resolve(self, name: str | None) -> str | None:
        """The voice to ask TTS for (None: its default)."""
        if name is None:
            return None
        lowered = name.strip().lower()
        voices = await self._model_voices() if lowered in OPENAI_VOICES else []
        return pick(name, voices)

    async def _model_voices(self) -> list[str]:
        if self._voices is not None:
            return self._voices
        try:
            reply = await self.core.upstream.unary("tts", "Describe", tts_pb2.DescribeRequest())
        except UpstreamError as exc:
            log.warning(
                "TTS Describe failed (%s): OpenAI voice names take the default voice",
                exc.code.name,
            )
            return []
        self._voices = [v.name for v in reply.voices]
        return self._voices
