"""Voice activity detection: Silero VAD (the ONNX model faster-whisper ships) scored window by
window with its recurrent state kept per stream, and an endpointer that turns the speech
probabilities into utterances.

Scoring a stream in pieces gives exactly the probabilities faster-whisper's offline
`get_speech_timestamps` computes on the whole audio (same 512-sample windows, same 64-sample
context, same carried h/c state). The endpointer is pure logic, tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.stt.engine import SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
_CONTEXT = 64


class FrameScorer(Protocol):
    """Speech probabilities of consecutive windows of one stream, state kept between calls."""

    def score(self, windows: np.ndarray) -> np.ndarray:
        """(n, WINDOW) float32 -> (n,) probabilities in [0, 1]."""
        ...


class SpeechDetector(Protocol):
    """Makes frame scorers, one per stream."""

    def new_scorer(self) -> FrameScorer:
        """A scorer with fresh state."""


@dataclass(frozen=True)
class VadParams:
    """The endpointer's settings: speech probability threshold in [0, 1], and durations in
    milliseconds (Endpointer says what each does)."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 400
    speech_pad_ms: int = 200
    max_utterance_ms: int = 30_000

    @property
    def neg_threshold(self) -> float:
        """Below this a window is silence; between the two, the state does not change."""
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechStart:
    """An utterance starts at `sample` (16 kHz, from the start of the stream, padding included)."""

    sample: int  # padded start of the utterance, from the start of the stream


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance ends at `sample`; `forced` when cut at `max_utterance_ms` or the end of the
    audio rather than by silence."""

    sample: int  # padded end of the utterance
    forced: bool = False  # cut at max_utterance_ms (or the end of the audio), not silence


Boundary = SpeechStart | SpeechEnd


class Endpointer:
    """Window probabilities in, utterance boundaries out (in samples at 16 kHz).

    A window at or above `threshold` is speech; below `neg_threshold`, silence; between,
    whatever the previous window was. idle -> candidate at the first speech window;
    candidate -> speaking (SpeechStart, padded back from the candidate) once `min_speech_ms`
    of speech is heard, or back to idle after `min_silence_ms` of silence; speaking -> idle
    (SpeechEnd, padded) after `min_silence_ms` of silence, or at `max_utterance_ms`.
    """

    def __init__(self, params: VadParams, window: int = WINDOW) -> None:
        ms = SAMPLE_RATE // 1000
        self.params, self.window = params, window
        self._min_speech, self._min_silence = params.min_speech_ms * ms, params.min_silence_ms * ms
        self._pad, self._max = params.speech_pad_ms * ms, params.max_utterance_ms * ms
        self.position = 0  # samples scored so far
        self.start: int | None = None  # padded start of the current utterance, if speaking
        self._candidate: int | None = None  # first speech window before SpeechStart
        self._heard = 0  # speech heard since the candidate, in samples
        self._silence: int | None = None
        self._last_end = 0

    @property
    def speaking(self) -> bool:
        """True inside an utterance."""
        return self.start is not None

    @property
    def pausing(self) -> bool:
        """Speaking, but the latest windows are silence: the utterance may be ending."""
        return self.start is not None and self._silence is not None

    @property
    def earliest_start(self) -> int:
        """No utterance still to come starts before this sample (audio before it can go)."""
        if self.start is not None:
            return self.start
        origin = self.position if self._candidate is None else self._candidate
        return max(origin - self._pad, self._last_end, 0)

    def push(self, prob: float) -> list[Boundary]:
        """Feed the next window's speech probability; returns the boundaries it causes (often
        none)."""
        here = self.position
        self.position += self.window
        if self.start is None:
            return self._idle(prob, here)
        return self._speaking(prob, here)

    def _idle(self, prob: float, here: int) -> list[Boundary]:
        if self._candidate is None:
            if prob < self.params.threshold:
                return []
            self._candidate, self._heard, self._silence = here, 0, None
        self._track_silence(prob, here)
        if self._silence is None:
            self._heard += self.window
        elif self.position - self._silence >= self._min_silence:
            self._candidate = None  # a blip: it ended before min_speech_ms of speech
            return []
        if self._heard < max(self._min_speech, 1):
            return []
        self.start = max(self._candidate - self._pad, self._last_end, 0)
        self._candidate = None
        return [SpeechStart(self.start)]

    def _track_silence(self, prob: float, here: int) -> None:
        if prob >= self.params.threshold:
            self._silence = None
        elif prob < self.params.neg_threshold and self._silence is None:
            self._silence = here

    def _speaking(self, prob: float, here: int) -> list[Boundary]:
        assert self.start is not None
        self._track_silence(prob, here)
        if self._silence is not None and self.position - self._silence >= self._min_silence:
            return [self._end(min(self._silence + self._pad, self.position), forced=False)]
        if self.position - self.start >= self._max:
            return [self._end(self.position, forced=True)]
        return []

    def _end(self, sample: int, forced: bool) -> SpeechEnd:
        self.start, self._silence, self._last_end = None, None, sample
        return SpeechEnd(sample, forced)

    def finish(self, total: int) -> SpeechEnd | None:
        """The end of the audio at `total` samples: ends an utterance still open."""
        if self.start is None:
            return None
        end = total if self._silence is None else min(self._silence + self._pad, total)
        return self._end(end, forced=self._silence is None)


def speech_spans(
    detector: SpeechDetector, audio: np.ndarray, params: VadParams
) -> list[tuple[int, int]]:
    """The utterances of a whole clip, as (start, end) samples: the streaming endpointer run
    over the clip, so Recognize and StreamingRecognize agree on what is speech."""
    usable = len(audio) - len(audio) % WINDOW
    probs = detector.new_scorer().score(audio[:usable].reshape(-1, WINDOW))
    endpointer, start = Endpointer(params), 0
    spans: list[tuple[int, int]] = []
    for prob in probs:
        for event in endpointer.push(float(prob)):
            if isinstance(event, SpeechStart):
                start = event.sample
            else:
                spans.append((start, event.sample))
    last = endpointer.finish(len(audio))
    if last is not None:
        spans.append((start, last.sample))
    return spans


class SileroDetector:
    """`SpeechDetector` over faster-whisper's bundled Silero VAD; one ONNX session shared by
    every stream (onnxruntime's `run` is thread-safe; each stream carries its own state)."""

    def __init__(self) -> None:
        try:
            from faster_whisper.vad import get_vad_model
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the VAD needs faster-whisper: pip install 'milo[stt]'") from exc
        self._session: Any = get_vad_model().session

    def new_scorer(self) -> SileroScorer:
        """A scorer for one stream, sharing the ONNX session."""
        return SileroScorer(self._session)


class SileroScorer:
    """Silero VAD scores for one stream: the recurrent state (h, c) and the last 64 samples of
    context carried from call to call."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """(n, WINDOW) float32 windows at 16 kHz -> (n,) speech probabilities in [0, 1]."""
        if len(windows) == 0:
            return np.zeros(0, np.float32)
        windows = windows.astype(np.float32, copy=False)
        contexts = np.concatenate([self._context[None], windows[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1)
        out, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -_CONTEXT:].copy()
        return np.asarray(out, np.float32).reshape(-1)
