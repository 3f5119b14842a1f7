"""The STT service's composition root: settings -> engine, VAD, core and servicer, as one
`ModelService` the runtime hosts."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.doctor.models import preflight
from services.runtime.model_service import ModelService
from services.stt.batching import BatchPolicy
from services.stt.config import SttSettings
from services.stt.convert import ServerInfo
from services.stt.core import Defaults, SttCore
from services.stt.engine import SttEngine
from services.stt.guard import GuardParams
from services.stt.servicer import SttServicer
from services.stt.vad import SileroDetector, SpeechDetector, VadParams
from services.stt.whisper_engine import WhisperConfig, WhisperEngine

SERVICE_NAME = stt_pb2.DESCRIPTOR.services_by_name["Stt"].full_name


def defaults(settings: SttSettings) -> Defaults:
    """The recognition defaults (language, beam, VAD, guard, limits) from the settings."""
    s = settings
    return Defaults(
        language=s.language,
        beam_size=s.beam_size,
        initial_prompt=s.initial_prompt,
        vad=VadParams(
            threshold=s.vad_threshold,
            min_speech_ms=s.vad_min_speech_ms,
            min_silence_ms=s.vad_min_silence_ms,
            speech_pad_ms=s.vad_speech_pad_ms,
            max_utterance_ms=s.max_utterance_ms,
        ),
        partial_results=s.partial_results,
        partial_interval_ms=s.partial_interval_ms,
        guard=GuardParams(
            no_speech_threshold=s.no_speech_threshold,
            log_prob_threshold=s.log_prob_threshold,
            compression_ratio_threshold=s.compression_ratio_threshold,
        ),
        max_audio_bytes=s.max_audio_bytes,
        max_audio_ms=s.max_audio_ms,
    )


def whisper_config(settings: SttSettings) -> WhisperConfig:
    """The faster-whisper engine's configuration from the settings."""
    s = settings
    return WhisperConfig(
        model_dir=s.model_dir,
        model_id=s.model_id,
        device=s.device,
        device_index=s.device_index,
        compute_type=s.compute_type,
        cpu_threads=s.cpu_threads,
        num_workers=s.num_workers,
        no_speech_threshold=s.no_speech_threshold,
        log_prob_threshold=s.log_prob_threshold,
        compression_ratio_threshold=s.compression_ratio_threshold,
    )


def make_service(
    settings: SttSettings,
    engine: SttEngine | None = None,
    make_detector: Callable[[], SpeechDetector] = SileroDetector,
) -> ModelService:
    """The STT service: a faster-whisper engine (or `engine`: tier-2 tests pass a fake),
    the VAD (`make_detector`), the core and the servicer."""
    core = SttCore(
        engine or WhisperEngine(whisper_config(settings)),
        make_detector,
        defaults(settings),
        workers=settings.num_workers,
        batching=BatchPolicy(
            max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000
        ),
    )
    servicer = SttServicer(
        core,
        ServerInfo(
            max_concurrent_streams=settings.max_concurrency,
            partial_results=settings.partial_results,
        ),
    )
    check = None if engine else partial(preflight, "stt", settings.model_dir)
    return ModelService(
        "stt",
        (SERVICE_NAME,),
        core,
        partial(stt_pb2_grpc.add_SttServicer_to_server, servicer),
        preflight=check,
    )
