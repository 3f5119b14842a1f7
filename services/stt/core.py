"""The recognizer behind the servicer: request options -> decode options, whole clips, and
streams, over one engine, one VAD and one decode scheduler. No protobuf here.

Language policy: Whisper is always given a language (short clips are misdetected
otherwise): the request's, else the server default (`mg` out of the box). An English-only
model (such as the demo tiny.en) accepts only `en`; when the configured default is another
language, the service does NOT refuse to start: it falls back to `en` with a warning in
the log, and Describe reports `default_language: en`, so the offline demo stack runs with
no extra setting while a real deployment sees the mismatch at once.

`auto` (as the request's language or the default) asks Whisper to identify the language
itself from the first 30 s (an English-only model: always `en`); the result says which
language it used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.stt import metrics
from services.stt.audio import AudioSpec, decode_clip
from services.stt.batching import BatchPolicy
from services.stt.engine import SAMPLE_RATE, DecodeOptions, SttEngine, Transcript
from services.stt.guard import GuardParams, apply_guard
from services.stt.scheduler import DecodeScheduler
from services.stt.stream import StreamOptions, StreamSession
from services.stt.vad import SpeechDetector, VadParams, speech_spans

log = logging.getLogger(__name__)
_KNOWN_LANGUAGES_HINT = "an ISO 639-1 code such as 'mg', 'fr' or 'en' (or 'auto' to detect it)"
AUTO = "auto"


@dataclass(frozen=True)
class Defaults:
    """The server's defaults and limits: language, beam size, prompt, VAD, partial results (every
    `partial_interval_ms`), hallucination guard, and the largest clip Recognize takes
    (`max_audio_bytes` encoded, `max_audio_ms` decoded)."""

    language: str = "mg"
    beam_size: int = 5
    initial_prompt: str | None = None
    vad: VadParams = field(default_factory=VadParams)
    partial_results: bool = True
    partial_interval_ms: int = 1000
    guard: GuardParams = field(default_factory=GuardParams)
    max_audio_bytes: int = 16 * 1024 * 1024
    max_audio_ms: int = 600_000


@dataclass(frozen=True)
class RequestOptions:
    """What one request asks for; None: the server default."""

    language: str | None = None
    beam_size: int | None = None
    word_timestamps: bool | None = None
    initial_prompt: str | None = None


@dataclass(frozen=True)
class Recognition:
    """A Recognize result: the transcript, the clip's length and the processing time (seconds)."""

    transcript: Transcript
    audio_seconds: float
    processing_seconds: float


class SttCore:
    """Recognition over one engine: `load` before use, `close` after (see the runtime's
    `model_service`); the VAD detector is made on load."""

    def __init__(
        self,
        engine: SttEngine,
        make_detector: Callable[[], SpeechDetector],
        defaults: Defaults,
        workers: int = 1,
        batching: BatchPolicy | None = None,
    ) -> None:
        self.engine, self._make_detector = engine, make_detector
        self.defaults = defaults
        self.callers = 0  # open streams and Recognize calls (the batch policy's company)
        self.scheduler = DecodeScheduler(
            workers, self._run_batch, batching, callers=lambda: self.callers
        )
        self._detector: SpeechDetector | None = None
        self.default_language = defaults.language

    @property
    def detector(self) -> SpeechDetector:
        """The VAD; raises FailedPrecondition until loaded."""
        if self._detector is None:
            raise FailedPrecondition("the VAD is not loaded")
        return self._detector

    def load(self) -> None:
        """Load the engine and the VAD, settle the default language, warm both up. Blocks."""
        self._detector = self._make_detector()
        engine = self.engine
        engine.load()
        if self.defaults.language not in (*engine.languages, AUTO):
            if engine.multilingual:
                raise ValueError(
                    f"default language {self.defaults.language!r} is not one "
                    f"Whisper knows; set MILO_STT_LANGUAGE to {_KNOWN_LANGUAGES_HINT}"
                )
            log.warning(
                "model %s is English-only: default language %r is not supported, "
                "falling back to 'en' (set MILO_STT_LANGUAGE=en to silence this)",
                engine.model_id,
                self.defaults.language,
            )
            self.default_language = "en"
        self._warm_up()

    def _warm_up(self) -> None:
        start = time.monotonic()
        t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
        tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        speech_spans(self.detector, tone, self.defaults.vad)
        options = DecodeOptions(language=self.language(None), beam_size=self.defaults.beam_size)
        self.engine.transcribe(tone, options)  # the default path: beam search, word timings
        log.info("warmed up in %.2fs", time.monotonic() - start)

    def close(self) -> None:
        """Stop the decode scheduler and release the model."""
        self.scheduler.close()
        self.engine.close()

    def decode_options(self, req: RequestOptions) -> DecodeOptions:
        """Validated options, defaults filled in; InvalidArgument says what is wrong."""
        beam = self.defaults.beam_size if req.beam_size is None else req.beam_size
        if not 1 <= beam <= 20:
            raise InvalidArgument(f"beam_size must be between 1 and 20, got {beam}")
        prompt = self.defaults.initial_prompt if req.initial_prompt is None else req.initial_prompt
        if prompt is not None and len(prompt) > 2000:
            raise InvalidArgument(f"initial_prompt is {len(prompt)} characters; at most 2000")
        return DecodeOptions(
            language=self.language(req.language),
            beam_size=beam,
            initial_prompt=prompt or None,
            word_timestamps=True if req.word_timestamps is None else req.word_timestamps,
        )

    def language(self, asked: str | None) -> str | None:
        """The language to decode in; None asks the engine to detect it."""
        code = self.default_language if asked is None else asked.strip().lower()
        engine = self.engine
        if code == AUTO:
            return None if engine.multilingual else "en"
        if code in engine.languages:
            return code
        if not code:
            raise InvalidArgument(
                f"language is empty: leave it unset for the default "
                f"({self.default_language!r}) or send {_KNOWN_LANGUAGES_HINT}"
            )
        if not engine.multilingual and _whisper_knows(code):
            raise InvalidArgument(
                f"model {engine.model_id} is English-only: it transcribes only 'en', not {code!r}"
            )
        raise InvalidArgument(
            f"unknown language code {asked!r}: send {_KNOWN_LANGUAGES_HINT}"
            + ("" if engine.multilingual else " (this model accepts only 'en')")
        )

    async def recognize(self, data: bytes, spec: AudioSpec, req: RequestOptions) -> Recognition:
        """Transcribe one clip: decode the audio, find speech with the VAD, run the model only if
        there is some, apply the hallucination guard. Raises InvalidArgument for a clip over the
        limits, audio that cannot be decoded, or bad options."""
        self.callers += 1
        try:
            return await self._recognize(data, spec, req)
        finally:
            self.callers -= 1

    async def _recognize(self, data: bytes, spec: AudioSpec, req: RequestOptions) -> Recognition:
        start = time.monotonic()
        limit = self.defaults.max_audio_bytes
        if len(data) > limit:
            raise InvalidArgument(
                f"audio is {len(data)} bytes; the limit is {limit} bytes "
                "(split it or use StreamingRecognize)"
            )
        options = self.decode_options(req)
        audio, spans = await asyncio.to_thread(self._prepare, data, spec)
        seconds = len(audio) / SAMPLE_RATE
        metrics.AUDIO_SECONDS.labels("Recognize").inc(seconds)
        if not spans:
            metrics.NO_SPEECH.inc()
            transcript = Transcript(segments=(), language=options.language or "", duration=seconds)
        else:
            transcript = await self.decode(audio, options, "recognize")
            speech = [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in spans]
            transcript = self.guard(transcript, speech)
        took = time.monotonic() - start
        log.debug(
            "recognized %.2f s of audio in %.3f s (%d speech spans, %d segments)",
            seconds,
            took,
            len(spans),
            len(transcript.segments),
        )
        return Recognition(transcript, seconds, took)

    def _prepare(self, data: bytes, spec: AudioSpec) -> tuple[np.ndarray, list[tuple[int, int]]]:
        max_samples = self.defaults.max_audio_ms * SAMPLE_RATE // 1000
        audio = decode_clip(data, spec, max_samples)
        return audio, speech_spans(self.detector, audio, self.defaults.vad)

    async def decode(
        self, audio: np.ndarray, options: DecodeOptions, kind: str, key: object | None = None
    ) -> Transcript:
        """One decode through the scheduler: urgent ones (finals, Recognize) are batched
        with others of the same options; `key` makes it a replaceable best-effort job
        (an empty transcript if it was replaced)."""
        engine = self.engine

        def job() -> tuple[Transcript, float]:
            start = time.monotonic()
            return engine.transcribe(audio, options), time.monotonic() - start

        if key is None:
            result: tuple[Transcript, float] | None = await self.scheduler.run_batched(
                options, audio
            )
        else:
            result = await self.scheduler.run_latest(key, job)
        if result is None:
            return Transcript(segments=(), language=options.language or "", duration=0.0)
        transcript, took = result
        transcript = replace(transcript, duration=len(audio) / SAMPLE_RATE).clamped()
        metrics.DECODE_SECONDS.labels(kind).observe(took)
        if transcript.duration > 0:
            metrics.REAL_TIME_FACTOR.labels(kind).observe(took / transcript.duration)
        return transcript

    def _run_batch(
        self, options: Hashable, audios: Sequence[np.ndarray]
    ) -> list[tuple[Transcript, float] | BaseException]:
        """Decode thread: one model call for all `audios` when the engine batches (the
        time of each is the batch's); else, or if the batch failed, each alone, so one
        bad item fails only its own caller."""
        assert isinstance(options, DecodeOptions)
        engine = self.engine
        batched = getattr(engine, "transcribe_batch", None)
        if batched is not None and len(audios) > 1:
            start = time.monotonic()
            try:
                transcripts = batched(audios, options)
            except Exception:
                log.exception("batched decode of %d clips failed; decoding each alone", len(audios))
                metrics.BATCH_ALONE.inc(len(audios))
            else:
                took = time.monotonic() - start
                return [(t, took) for t in transcripts]
        out: list[tuple[Transcript, float] | BaseException] = []
        for audio in audios:
            start = time.monotonic()
            try:
                out.append((engine.transcribe(audio, options), time.monotonic() - start))
            except Exception as exc:
                out.append(exc)
        return out

    def drop(self, key: object) -> None:
        """Forget the waiting best-effort decode of `key` (a stream whose utterance ended)."""
        self.scheduler.drop(key)

    def guard(
        self, transcript: Transcript, speech: list[tuple[float, float]] | None = None
    ) -> Transcript:
        """The transcript less the segments the hallucination guard drops (services.stt.guard);
        `speech`: the VAD's spans in seconds, for a whole clip. Drops are counted in metrics."""
        kept = apply_guard(transcript, self.defaults.guard, speech)
        if kept.dropped > transcript.dropped:
            metrics.HALLUCINATIONS.inc(kept.dropped - transcript.dropped)
        return kept

    def open_stream(
        self,
        spec: AudioSpec,
        req: RequestOptions,
        vad: VadParams,
        partials: bool,
        partial_interval_ms: int,
    ) -> StreamSession:
        """A streaming session for raw PCM in `spec`; raises InvalidArgument for bad options. The
        caller must close it."""
        options = StreamOptions(
            spec=spec,
            decode=self.decode_options(req),
            vad=vad,
            partials=partials,
            partial_interval_ms=partial_interval_ms,
        )
        session = StreamSession(
            options, self.detector.new_scorer(), self, on_close=self._stream_closed
        )
        self.callers += 1
        return session

    def _stream_closed(self) -> None:
        self.callers -= 1

    def vad_params(self, **overrides: float | int | None) -> VadParams:
        """The server's VAD settings with the request's set fields over them, range-checked."""
        given = {k: v for k, v in overrides.items() if v is not None}
        for name, value in given.items():
            low, high = _VAD_LIMITS[name]
            if not low <= value <= high:
                raise InvalidArgument(f"vad.{name} must be between {low} and {high}, got {value}")
        return replace(self.defaults.vad, **given)  # type: ignore[arg-type]


_VAD_LIMITS: dict[str, tuple[float, float]] = {  # the same ranges as the settings
    "threshold": (0.01, 0.99),
    "min_speech_ms": (0, 10_000),
    "min_silence_ms": (32, 10_000),
    "speech_pad_ms": (0, 2_000),
    "max_utterance_ms": (1_000, 30_000),
}


def _whisper_knows(code: str) -> bool:
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:  # pragma: no cover
        return len(code) == 2
    return code in _LANGUAGE_CODES
