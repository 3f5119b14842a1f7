"""The TTS service's composition root: settings -> engine, core and servicer, as one
`ModelService` the runtime hosts."""

from __future__ import annotations

from functools import partial

from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.doctor.models import preflight
from services.runtime.model_service import ModelService
from services.tts.config import TtsSettings
from services.tts.core import TtsCore
from services.tts.engine import SpeechEngine
from services.tts.servicer import TtsServicer

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["Tts"].full_name


def vits_engine(settings: TtsSettings) -> SpeechEngine:
    """The real engine: VITS over settings.model_dir (torch is imported on load)."""
    from services.tts.vits_engine import VitsEngine

    s = settings
    return VitsEngine(
        s.model_dir,
        device=s.device,
        dtype=s.dtype,
        threads=s.threads,
        voice=s.voice,
        noise_scale=s.noise_scale,
        noise_scale_duration=s.noise_scale_duration,
        model_id=s.model_id,
    )


def make_service(settings: TtsSettings, engine: SpeechEngine | None = None) -> ModelService:
    """The TTS service: a VITS engine (or `engine`: tier-2 tests pass a fake), the core and
    the servicer."""
    core = TtsCore(engine or vits_engine(settings), settings)
    servicer = TtsServicer(core)
    check = None if engine else partial(preflight, "tts", settings.model_dir)
    return ModelService(
        "tts",
        (SERVICE_NAME,),
        core,
        partial(tts_pb2_grpc.add_TtsServicer_to_server, servicer),
        preflight=check,
    )
