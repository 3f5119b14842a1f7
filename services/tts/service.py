"""The TTS service as the runtime hosts it: the engine, its servicer, its life cycle."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.tts.config import TtsSettings
from services.tts.engine import SpeechEngine
from services.tts.servicer import TtsServicer

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["Tts"].full_name


class TtsService:
    name = "tts"
    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, engine: SpeechEngine, settings: TtsSettings) -> None:
        self.engine, self.settings = engine, settings
        self.servicer = TtsServicer(engine, settings)

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def device(self) -> str:
        return self.engine.device

    def register(self, server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TtsServicer_to_server(self.servicer, server)

    def load(self) -> None:
        self.engine.load()

    def close(self) -> None:
        self.servicer.batcher.stop_threadsafe()
        self.engine.close()


def make_service(settings: TtsSettings) -> TtsService:
    """The real service: a VITS engine over settings.model_dir (torch imported on load)."""
    from services.tts.vits import VitsEngine

    engine = VitsEngine(
        settings.model_dir, device=settings.device, dtype=settings.dtype,
        threads=settings.threads, voice=settings.voice, noise_scale=settings.noise_scale,
        noise_scale_duration=settings.noise_scale_duration, model_id=settings.model_id,
    )  # fmt: skip
    return TtsService(engine, settings)
