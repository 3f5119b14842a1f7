"""The faster-whisper engine: one WhisperModel (CTranslate2) per process.

Concurrency: CTranslate2 runs up to `num_workers` decodes at once on one copy of the
weights; `transcribe` and `transcribe_batch` are called from the scheduler's worker
threads (never the event loop), and the scheduler never runs more than `num_workers` at
once. `transcribe_batch` decodes several utterances in one model call (whisper_batch.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.runtime.model_folder import manifest_model_id
from services.stt import metrics
from services.stt.engine import SAMPLE_RATE, DecodeOptions, Segment, Transcript, Word
from services.stt.whisper_batch import settings_from_kwargs, transcribe_batch

log = logging.getLogger(__name__)

_INSTALL_HINT = "the STT engine needs faster-whisper: pip install 'milo[stt]'"


@dataclass(frozen=True)
class WhisperConfig:
    """How to load and run faster-whisper: `device` "cpu", "cuda" or "auto", `compute_type` as
    CTranslate2 names it, `cpu_threads` (0: CTranslate2's default), `num_workers` decodes at
    once; the thresholds go to `transcribe` (they drive Whisper's temperature fallback)."""

    model_dir: Path
    model_id: str | None = None  # None: the manifest's, else the folder's name
    device: str = "auto"
    device_index: int = 0
    compute_type: str = "auto"
    cpu_threads: int = 0
    num_workers: int = 1
    # Passed to transcribe: they also drive Whisper's temperature fallback.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


def resolve_device(device: str) -> str:
    """`auto` -> cuda when CTranslate2 sees a GPU, else cpu."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def transcribe_kwargs(config: WhisperConfig, options: DecodeOptions) -> dict[str, Any]:
    """The keyword arguments given to WhisperModel.transcribe (the benchmark reuses them)."""
    c = config
    return {
        "language": options.language,
        "task": "transcribe",
        "beam_size": 1 if options.best_effort else options.beam_size,
        "best_of": 1 if options.best_effort else 5,
        "temperature": 0.0 if options.best_effort else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "word_timestamps": options.word_timestamps and not options.best_effort,
        "initial_prompt": options.initial_prompt,
        # Each request/utterance stands alone: no carried context to loop on.
        "condition_on_previous_text": False,
        "vad_filter": False,  # the service runs its own VAD (one pass, shared with the guard)
        "no_speech_threshold": c.no_speech_threshold,
        "log_prob_threshold": c.log_prob_threshold,
        "compression_ratio_threshold": c.compression_ratio_threshold,
    }


class WhisperEngine:
    """`SttEngine` over faster_whisper.WhisperModel; `load` reads the model."""

    def __init__(self, config: WhisperConfig) -> None:
        self.config = config
        self.model_id = (
            config.model_id
            or manifest_model_id(config.model_dir, "stt")
            or config.model_dir.resolve().name
        )
        self.device = config.device
        self.compute_type = config.compute_type
        self.multilingual = False
        self.languages: tuple[str, ...] = ("en",)

    def load(self) -> None:
        """Load the model (blocking). Raises FileNotFoundError without model.bin, RuntimeError
        without faster-whisper."""
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import _LANGUAGE_CODES
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(_INSTALL_HINT) from exc
        config = self.config
        if not (config.model_dir / "model.bin").is_file():
            raise FileNotFoundError(
                f"no faster-whisper model in {config.model_dir} (model.bin missing); "
                "build the demo set with `milo models demo` or set MILO_STT_MODEL_DIR"
            )
        # faster-whisper logs every call at INFO; the service logs what matters itself.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        self.device = resolve_device(config.device)
        start = time.monotonic()
        self.model = WhisperModel(
            str(config.model_dir),
            device=self.device,
            device_index=config.device_index,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=config.num_workers,
            local_files_only=True,
        )
        self.compute_type = str(getattr(self.model.model, "compute_type", config.compute_type))
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = tuple(sorted(_LANGUAGE_CODES)) if self.multilingual else ("en",)
        log.info(
            "loaded %s from %s on %s (%s) in %.2fs; multilingual=%s",
            self.model_id,
            config.model_dir,
            self.device,
            self.compute_type,
            time.monotonic() - start,
            self.multilingual,
        )

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """The transcript of 16 kHz mono float32 `audio`, decoded by faster-whisper (blocking)."""
        segments, info = self.model.transcribe(audio, **transcribe_kwargs(self.config, options))
        out = tuple(_segment(s) for s in segments)  # the generator decodes as it goes
        return Transcript(segments=out, language=info.language, duration=len(audio) / SAMPLE_RATE)

    def transcribe_batch(
        self, audios: Sequence[np.ndarray], options: DecodeOptions
    ) -> list[Transcript]:
        """`transcribe` of each audio, with one batched encode/generate/align for those
        that fit one 30 s window (services.stt.whisper_batch); the others, and those whose
        lone decode would go on past the first try, are decoded alone here."""
        if options.language is None:  # language "auto": identified per utterance, alone
            return [self.transcribe(audio, options) for audio in audios]
        kwargs = transcribe_kwargs(self.config, options)
        decoded = transcribe_batch(self.model, audios, settings_from_kwargs(kwargs))
        language = options.language if self.multilingual else "en"
        out = []
        for audio, segments in zip(audios, decoded, strict=True):
            if segments is None:
                metrics.BATCH_ALONE.inc()
                out.append(self.transcribe(audio, options))
            else:
                out.append(
                    Transcript(
                        segments=segments, language=language, duration=len(audio) / SAMPLE_RATE
                    )
                )
        return out

    def close(self) -> None:
        """Release the model."""
        model = getattr(self, "model", None)
        if model is not None:
            del self.model
            log.info("released %s", self.model_id)


def _segment(s: Any) -> Segment:
    words = tuple(
        Word(
            word=w.word.strip(),
            start=float(w.start),
            end=float(w.end),
            probability=float(w.probability),
        )
        for w in (s.words or ())
    )
    return Segment(
        text=s.text.strip(),
        start=float(s.start),
        end=float(s.end),
        avg_logprob=float(s.avg_logprob),
        no_speech_prob=float(s.no_speech_prob),
        compression_ratio=float(s.compression_ratio),
        words=words,
    )
