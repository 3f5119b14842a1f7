"""The STT service as the runtime hosts it: settings -> engine, VAD, core and servicer."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.stt.batching import BatchPolicy
from services.stt.config import SttSettings
from services.stt.convert import ServerInfo
from services.stt.core import Defaults, SttCore
from services.stt.engine import SttEngine
from services.stt.guard import GuardParams
from services.stt.servicer import SttServicer
from services.stt.vad import SileroDetector, SpeechDetector, VadParams
from services.stt.whisper_engine import WhisperConfig, WhisperEngine, read_model_id


def defaults(settings: SttSettings) -> Defaults:
    s = settings
    return Defaults(
        language=s.language, beam_size=s.beam_size, initial_prompt=s.initial_prompt,
        vad=VadParams(threshold=s.vad_threshold, min_speech_ms=s.vad_min_speech_ms,
                      min_silence_ms=s.vad_min_silence_ms, speech_pad_ms=s.vad_speech_pad_ms,
                      max_utterance_ms=s.max_utterance_ms),
        partial_results=s.partial_results, partial_interval_ms=s.partial_interval_ms,
        guard=GuardParams(no_speech_threshold=s.no_speech_threshold,
                          log_prob_threshold=s.log_prob_threshold,
                          compression_ratio_threshold=s.compression_ratio_threshold),
        max_audio_bytes=s.max_audio_bytes, max_audio_ms=s.max_audio_ms,
    )


def whisper_config(settings: SttSettings, model_id: str) -> WhisperConfig:
    s = settings
    return WhisperConfig(
        model_dir=s.model_dir, model_id=model_id, device=s.device, device_index=s.device_index,
        compute_type=s.compute_type, cpu_threads=s.cpu_threads, num_workers=s.num_workers,
        no_speech_threshold=s.no_speech_threshold, log_prob_threshold=s.log_prob_threshold,
        compression_ratio_threshold=s.compression_ratio_threshold,
    )


class SttService:
    """`services.runtime.server.Service` for speech recognition. Engine and detector
    factories are injectable: tier-2 tests pass fakes."""

    name = "stt"
    service_names = (stt_pb2.DESCRIPTOR.services_by_name["Stt"].full_name,)

    def __init__(
        self,
        settings: SttSettings,
        make_engine: Callable[[], SttEngine] | None = None,
        make_detector: Callable[[], SpeechDetector] = SileroDetector,
    ) -> None:
        self.model_id = settings.model_id or read_model_id(settings.model_dir)
        self.device: str = settings.device
        config = whisper_config(settings, self.model_id)
        self.core = SttCore(make_engine or (lambda: WhisperEngine(config)), make_detector,
                            defaults(settings), workers=settings.num_workers,
                            batching=BatchPolicy(max_batch=settings.max_batch,
                                                 window_s=settings.batch_window_ms / 1000))
        self.servicer = SttServicer(self.core, ServerInfo(
            max_concurrent_streams=settings.max_concurrency,
            partial_results=settings.partial_results))

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SttServicer_to_server(self.servicer, server)

    def load(self) -> None:
        self.core.load()
        self.model_id, self.device = self.core.engine.model_id, self.core.engine.device

    def close(self) -> None:
        self.core.close()


def make_service(settings: SttSettings) -> SttService:
    return SttService(settings)
