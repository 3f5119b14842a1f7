"""The TTS service's core. One synthesis, as a stream of events: validate the options, plan
the text, synthesize segment after segment in a worker thread, and send each segment's audio
as soon as it is ready.

A producer task runs the engine one segment ahead of what the client has taken (a queue of
one), so synthesis overlaps sending without running away from a slow reader. When the
client goes away the generator is closed, the producer is cancelled, and no further
segment is synthesized (the one in the engine, at most, finishes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from services.runtime.errors import InvalidArgument
from services.tts import metrics
from services.tts.audio import AudioEncoder, Chunk, Encoding, Samples
from services.tts.batcher import BatchPolicy, Caller, SynthesisBatcher
from services.tts.config import MAX_SEED, TtsSettings
from services.tts.engine import Segment, SpeechEngine
from services.tts.text import SentencePlan, TextPlan, plan_text

log = logging.getLogger(__name__)

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MIN_SPEED, MAX_SPEED = 0.5, 2.0


@dataclass(frozen=True)
class Options:
    """A request with the server defaults filled in (None: the server's default)."""

    text: str
    voice: str | None = None
    speed: float | None = None
    sample_rate: int | None = None
    encoding: Encoding = "pcm_s16le"
    seed: int | None = None


@dataclass(frozen=True)
class Job:
    """A validated request and its text plan."""

    plan: TextPlan
    voice: str
    speed: float
    sample_rate: int
    encoding: Encoding
    seed: int


@dataclass(frozen=True)
class Done:
    """The last event of a synthesis: sentences spoken, audio length, processing time and time to
    the first chunk (milliseconds), and characters dropped as unsayable."""

    sentences: int
    audio_duration_ms: float
    processing_ms: float
    first_chunk_ms: float
    dropped_characters: int


Event = SentencePlan | Chunk | Done


def sample_rates(engine: SpeechEngine) -> list[int]:
    """The output rates offered, in Hz: the model's own and the usual ones (8 to 48 kHz)."""
    return sorted({engine.sample_rate, *SAMPLE_RATES})


def prepare(options: Options, engine: SpeechEngine, settings: TtsSettings) -> Job:
    """Check a request and plan its text; InvalidArgument says what is wrong."""
    voice = options.voice if options.voice is not None else engine.voices[0]
    if voice not in engine.voices:
        raise InvalidArgument(f"unknown voice {voice!r}; voices: {', '.join(engine.voices)}")
    speed = options.speed if options.speed is not None else settings.speaking_rate
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidArgument(f"speed {speed:g} is out of range [{MIN_SPEED}, {MAX_SPEED}]")
    rate = options.sample_rate if options.sample_rate is not None else engine.sample_rate
    if rate not in sample_rates(engine):
        rates = ", ".join(str(r) for r in sample_rates(engine))
        raise InvalidArgument(f"sample rate {rate} Hz is not supported; use one of {rates}")
    seed = options.seed if options.seed is not None else settings.seed
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed {seed} is out of range [0, 2^64)")
    return Job(_plan(options.text, engine, settings), voice, speed, rate, options.encoding, seed)


def _plan(text: str, engine: SpeechEngine, settings: TtsSettings) -> TextPlan:
    if not text.strip():
        raise InvalidArgument("text is empty: send the Malagasy text to speak")
    if len(text) > settings.max_text_chars:
        raise InvalidArgument(
            f"text is {len(text)} characters long; the limit is {settings.max_text_chars}: "
            "split it into several requests"
        )
    plan = plan_text(text, engine.vocab, settings.max_segment_chars)
    if plan.dropped:
        metrics.DROPPED.inc(plan.dropped)
        log.info(
            "dropped %d characters the voice cannot say: %r", plan.dropped, plan.dropped_chars[:40]
        )
    if not plan.sentences and plan.dropped:
        raise InvalidArgument(
            f"nothing to say: none of the {plan.dropped} characters left after normalization "
            f"({plan.dropped_chars[:20]!r}) can be spoken by this voice"
        )
    if not plan.sentences:
        raise InvalidArgument("nothing to say: the text has no words, only punctuation")
    return plan


def _seed(job: Job, segment: int) -> int:
    return (job.seed + segment) % (MAX_SEED + 1)


async def _produce(
    job: Job,
    engine: SpeechEngine,
    settings: TtsSettings,
    queue: asyncio.Queue[tuple[SentencePlan, int, Samples]],
    caller: Caller | None,
) -> None:
    """Synthesize every segment in order (pauses appended) into `queue`: through the
    batcher (`caller`), else alone in a worker thread."""
    count = 0
    sentences = job.plan.sentences
    for sentence in sentences:
        for i, text in enumerate(sentence.segments):
            started = time.monotonic()
            segment = Segment(text, job.voice, job.speed, _seed(job, count))
            if caller is not None:
                samples = await caller.synthesize(segment)
            else:
                samples = await asyncio.to_thread(
                    engine.synthesize, text, job.voice, job.speed, segment.seed
                )
            metrics.record_segment(time.monotonic() - started, len(samples), engine.sample_rate)
            last_in_sentence = i == len(sentence.segments) - 1
            if sentence is not sentences[-1] or not last_in_sentence:
                ms = settings.sentence_pause_ms if last_in_sentence else settings.clause_pause_ms
                samples = _with_pause(samples, ms / job.speed, engine.sample_rate)
            await queue.put((sentence, i, samples))
            count += 1


def _with_pause(samples: Samples, ms: float, rate: int) -> Samples:
    count = int(rate * ms / 1000)
    if count <= 0:
        return samples
    return np.concatenate([samples, np.zeros(count, dtype=np.float32)])


async def stream(
    job: Job, engine: SpeechEngine, settings: TtsSettings, batcher: SynthesisBatcher | None = None
) -> AsyncIterator[Event]:
    """The events of one synthesis: per sentence its SentencePlan then its chunks; Done.
    With a `batcher`, its segments share model calls with other requests' segments."""
    started = time.monotonic()
    first_chunk_ms = 0.0
    encoder = AudioEncoder(job.encoding, engine.sample_rate, job.sample_rate, settings.max_chunk_ms)
    queue: asyncio.Queue[tuple[SentencePlan, int, Samples]] = asyncio.Queue(maxsize=1)
    caller = batcher.join() if batcher is not None else None
    producer = asyncio.create_task(_produce(job, engine, settings, queue, caller))
    try:
        for _ in range(job.plan.segment_count):
            sentence, segment, samples = await _next(queue, producer)
            if segment == 0:
                yield sentence
            for chunk in encoder.push(samples):
                if chunk.index == 0:
                    first_chunk_ms = (time.monotonic() - started) * 1000
                    metrics.FIRST_CHUNK.observe(first_chunk_ms / 1000)
                yield chunk
        await producer
    finally:
        producer.cancel()
        if caller is not None:
            caller.close()
    processing_ms = (time.monotonic() - started) * 1000
    metrics.record_request(processing_ms / 1000, encoder.duration_ms / 1000)
    log.debug(
        "synthesized %d sentences, %.0f ms of audio in %.0f ms (first chunk %.0f ms)",
        len(job.plan.sentences),
        encoder.duration_ms,
        processing_ms,
        first_chunk_ms,
    )
    yield Done(
        len(job.plan.sentences),
        encoder.duration_ms,
        processing_ms,
        first_chunk_ms,
        job.plan.dropped,
    )


async def _next(
    queue: asyncio.Queue[tuple[SentencePlan, int, Samples]], producer: asyncio.Task[None]
) -> tuple[SentencePlan, int, Samples]:
    """The next segment, or the producer's exception if it failed first."""
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    producer.result()  # raises what the producer raised
    raise RuntimeError("the synthesis producer stopped early")


class TtsCore:
    """Synthesis over one engine: `load` before use, `close` after (see the runtime's
    `model_service`)."""

    def __init__(self, engine: SpeechEngine, settings: TtsSettings) -> None:
        self.engine, self.settings = engine, settings
        self.batcher = SynthesisBatcher(
            engine,
            BatchPolicy(max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000),
        )

    def load(self) -> None:
        """Load the model and warm it up (blocking)."""
        self.engine.load()

    def close(self) -> None:
        """Stop the batcher and release the model."""
        self.batcher.stop_threadsafe()
        self.engine.close()

    def sample_rates(self) -> list[int]:
        """The output rates offered, in Hz (see the module-level `sample_rates`)."""
        return sample_rates(self.engine)

    def prepare(self, options: Options) -> Job:
        """Check a request and plan its text; InvalidArgument says what is wrong."""
        return prepare(options, self.engine, self.settings)

    def stream(self, job: Job) -> AsyncIterator[Event]:
        """The events of one synthesis (see `stream`), its segments batched with other
        requests' segments."""
        return stream(job, self.engine, self.settings, self.batcher)
