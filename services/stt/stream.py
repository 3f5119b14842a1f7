"""One recognition stream: raw PCM chunks of any size in; speech-started, speech-ended,
partial and final events out, for as many utterances as the stream carries.

Per chunk: convert to 16 kHz mono and score the VAD windows (in a worker thread), run the
endpointer (on the loop), keep the audio of the current utterance only (bounded by
max_utterance_ms), and start decodes: a best-effort partial every `partial_interval_ms` of
audio (at most one in flight per stream, over the current utterance only), and one final
per utterance when it ends. Events leave in order through one queue; a final is queued as
a task, so the stream keeps reading audio while it decodes, and at most `_MAX_FINALS`
finals are in flight before reading waits (back-pressure on the client).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from services.stt import metrics
from services.stt.audio import AudioSpec, PcmConverter
from services.stt.engine import SAMPLE_RATE, DecodeOptions, Transcript
from services.stt.vad import WINDOW, Endpointer, FrameScorer, SpeechEnd, SpeechStart, VadParams

log = logging.getLogger(__name__)
_MAX_FINALS = 2


class Decoder(Protocol):
    """What a stream needs of the core (SttCore is the real one)."""

    async def decode(
        self, audio: np.ndarray, options: DecodeOptions, kind: str, key: object | None = None
    ) -> Transcript:
        """Decode 16 kHz mono float32 `audio`; `kind` labels metrics; `key` makes it a
        replaceable best-effort decode (an empty transcript if replaced)."""

    def guard(
        self, transcript: Transcript, speech: list[tuple[float, float]] | None = None
    ) -> Transcript:
        """The transcript less what the hallucination guard drops."""

    def drop(self, key: object) -> None:
        """Forget the waiting best-effort decode of `key`."""


@dataclass(frozen=True)
class StreamOptions:
    """One stream's settings: the declared audio, decode options, VAD settings, and whether to
    send partial results, at most one per `partial_interval_ms`."""

    spec: AudioSpec
    decode: DecodeOptions
    vad: VadParams
    partials: bool = True
    partial_interval_ms: int = 1000


@dataclass(frozen=True)
class SpeechStarted:
    """Utterance `index` began, `offset` seconds from the start of the stream."""

    index: int
    offset: float  # seconds from the start of the stream


@dataclass(frozen=True)
class SpeechEnded:
    """Utterance `index` ended, `offset` seconds from the start of the stream."""

    index: int
    offset: float


@dataclass(frozen=True)
class Result:
    """A partial or final transcript of utterance `index`: times in seconds from the start of the
    stream, `processing` the seconds spent decoding it."""

    is_final: bool
    index: int
    transcript: Transcript  # times from the start of the stream
    start: float
    end: float
    processing: float  # seconds the server spent decoding it


Event = SpeechStarted | SpeechEnded | Result


@dataclass(frozen=True)
class Emitted:
    """An event and the seconds of audio the stream had processed when it was sent."""

    event: Event
    processed: float  # seconds of audio processed in the stream when it left


class _End:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_Item = Event | asyncio.Task[Event | None] | _End | _Failed


class _Buffer:
    """The stream's recent audio, addressed by sample index from the start of the stream.
    Appends are O(1) (a list of chunks); the chunks are joined only when read or trimmed."""

    def __init__(self) -> None:
        self.base = 0
        self.end = 0
        self._chunks: list[np.ndarray] = []

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [
                np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            ]
        return self._chunks[0]

    def slice(self, start: int, end: int) -> np.ndarray:
        return self._joined()[max(start - self.base, 0) : max(end - self.base, 0)].copy()

    def trim(self, keep_from: int) -> None:
        """Forget the audio before sample `keep_from`."""
        cut = min(max(keep_from - self.base, 0), self.end - self.base)
        if cut:
            self._chunks = [self._joined()[cut:]]
            self.base += cut


class StreamSession:
    """One StreamingRecognize call: raw PCM in (`feed`, `finish`), VAD endpointing, decodes of
    utterances, events out (`events`); `close` when done."""

    def __init__(
        self,
        options: StreamOptions,
        scorer: FrameScorer,
        decoder: Decoder,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.options, self._scorer, self._decoder = options, scorer, decoder
        self._on_close = on_close
        self._converter = PcmConverter(options.spec)
        self.endpointer = Endpointer(options.vad)
        self._buffer = _Buffer()
        self._unscored = np.zeros(0, np.float32)
        self.index = 0  # the current (or next) utterance
        self._start = 0  # padded start of the current utterance, in samples
        self._next_partial = 0
        self._partial: asyncio.Task[None] | None = None
        self._finals: collections.deque[asyncio.Task[Event | None]] = collections.deque()
        self._out: asyncio.Queue[_Item] = asyncio.Queue()

    # -- audio in ------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Add a chunk of raw PCM; waits while too many final decodes are pending (backpressure).
        Raises InvalidArgument for audio that does not match the declared format."""
        samples, probs = await asyncio.to_thread(self._front, data)
        self._advance(samples, probs)
        while self._finals and self._finals[0].done():
            self._finals.popleft()
        if len(self._finals) >= _MAX_FINALS:  # the model is behind: stop reading a while
            await asyncio.wait({self._finals[0]})

    async def finish(self) -> None:
        """The client is done sending: end the open utterance at the end of the audio."""
        tail = await asyncio.to_thread(self._converter.flush)
        self._buffer.append(tail)
        end = self.endpointer.finish(self._buffer.end)
        if end is not None:
            self._on_end(end)
        self._out.put_nowait(_End())

    def _front(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Worker thread: convert, and score every whole VAD window now available."""
        samples = self._converter.convert(data)
        pending = np.concatenate([self._unscored, samples])
        usable = len(pending) - len(pending) % WINDOW
        probs = self._scorer.score(pending[:usable].reshape(-1, WINDOW))
        self._unscored = pending[usable:]
        return samples, probs

    def _advance(self, samples: np.ndarray, probs: np.ndarray) -> None:
        self._buffer.append(samples)
        for prob in probs:
            for boundary in self.endpointer.push(float(prob)):
                if isinstance(boundary, SpeechStart):
                    self._on_start(boundary)
                else:
                    self._on_end(boundary)
            self._maybe_partial()
        if not self.endpointer.speaking:
            self._buffer.trim(self.endpointer.earliest_start)

    # -- utterances ----------------------------------------------------------------------

    def _on_start(self, start: SpeechStart) -> None:
        self._start = start.sample
        self._buffer.trim(start.sample)
        interval = self.options.partial_interval_ms * SAMPLE_RATE // 1000
        self._next_partial = max(start.sample + interval, self.endpointer.position)
        self._out.put_nowait(SpeechStarted(self.index, start.sample / SAMPLE_RATE))

    def _on_end(self, end: SpeechEnd) -> None:
        start = max(self._start, self._buffer.base)
        metrics.UTTERANCES.labels("limit" if end.forced else "silence").inc()
        self._stop_partial()
        audio = self._buffer.slice(start, end.sample)
        self._out.put_nowait(SpeechEnded(self.index, end.sample / SAMPLE_RATE))
        final = asyncio.create_task(self._final(self.index, audio, start, time.monotonic()))
        self._finals.append(final)
        self._out.put_nowait(final)
        self.index += 1
        self._buffer.trim(end.sample)

    def _maybe_partial(self) -> None:
        position, start = self.endpointer.position, self.endpointer.start
        if not self.options.partials or start is None or position < self._next_partial:
            return
        self._next_partial = position + self.options.partial_interval_ms * SAMPLE_RATE // 1000
        if self._partial is not None and not self._partial.done():
            return  # one partial in flight per stream: skip this one
        if self.endpointer.pausing:
            return  # speech may be ending: keep the model free for the final
        audio = self._buffer.slice(start, position)
        self._partial = asyncio.create_task(self._partial_result(self.index, audio, start))

    def _stop_partial(self) -> None:
        self._decoder.drop(self)  # a partial still waiting for the model is not run
        self._partial = None

    async def _partial_result(self, index: int, audio: np.ndarray, start: int) -> None:
        began = time.monotonic()
        options = replace(self.options.decode, best_effort=True, word_timestamps=False)
        try:
            transcript = await self._decoder.decode(audio, options, "partial", key=self)
        except Exception:  # best effort: the final will say whether the model is broken
            log.exception("partial decode failed")
            return
        if index != self.index or not self.endpointer.speaking or not transcript.segments:
            return  # the utterance ended meanwhile (its final says it all), or nothing heard
        transcript = self._decoder.guard(transcript)
        if transcript.text:
            self._out.put_nowait(
                self._result(False, index, transcript, start, len(audio), time.monotonic() - began)
            )

    async def _final(self, index: int, audio: np.ndarray, start: int, ended_at: float) -> Event:
        began = time.monotonic()
        transcript = await self._decoder.decode(audio, self.options.decode, "final")
        transcript = self._decoder.guard(transcript)
        metrics.FINAL_LATENCY.observe(time.monotonic() - ended_at)
        return self._result(True, index, transcript, start, len(audio), time.monotonic() - began)

    @staticmethod
    def _result(
        final: bool, index: int, transcript: Transcript, start: int, length: int, took: float
    ) -> Result:
        offset = start / SAMPLE_RATE
        return Result(
            final, index, transcript.shifted(offset), offset, (start + length) / SAMPLE_RATE, took
        )

    # -- events out ----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Emitted]:
        """The events in order, until the stream is finished; raises the error given to `fail`."""
        while True:
            item = await self._out.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            event = await item if isinstance(item, asyncio.Task) else item
            if event is not None:
                yield Emitted(event, self.endpointer.position / SAMPLE_RATE)

    def fail(self, error: BaseException) -> None:
        """End `events` with `error` (after the events already queued)."""
        self._out.put_nowait(_Failed(error))

    def close(self) -> None:
        """The stream is over (or the client went away): stop its pending work."""
        tasks = [*self._finals, *([self._partial] if self._partial else [])]
        self._stop_partial()
        for task in tasks:
            task.cancel()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        log.info(
            "stream closed: %d utterance(s) in %.1f s of audio",
            self.index,
            self.endpointer.position / SAMPLE_RATE,
        )


async def run_stream(
    session: StreamSession, chunks: AsyncIterator[bytes]
) -> AsyncIterator[Emitted]:
    """Feed `chunks` into `session` in the background; yield its events in order."""

    async def pump() -> None:
        try:
            async for data in chunks:
                await session.feed(data)
            await session.finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, which raises it
            session.fail(exc)

    task = asyncio.create_task(pump())
    try:
        async for emitted in session.events():
            yield emitted
        await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        session.close()
