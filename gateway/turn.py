"""One conversation turn: user text -> (translate) -> LLM -> sentences -> (translate) -> TTS.

The LLM's deltas are cut into sentences as they stream; each sentence is translated back
and synthesized as soon as it is complete, in a pipeline of three stages joined by queues
(cut, translate, speak), so the first audio leaves while the LLM is still writing. Events
go out through `emit`; the turn never touches the client stream itself. Cancelling the task
(barge-in) cancels the LLM and TTS calls in flight, which stops generation upstream. A
sentence with nothing to say (only emoji, symbols or punctuation) is shown but not spoken,
and the rest of the reply goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from gateway import metrics
from gateway.config import GatewaySettings
from gateway.sentences import SentenceCutter
from gateway.upstream import Upstream, UpstreamError
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from milo.translate.v1 import translate_pb2
from milo.tts.v1 import tts_pb2
from services.runtime.wav import streaming_wav_header

log = logging.getLogger(__name__)
Stage = gw.Stage


class StageFailure(Exception):
    """A stage failed; the turn ends with an in-band TurnError naming it."""

    def __init__(self, stage: int, code: str, message: str) -> None:
        super().__init__(message)
        self.stage, self.code, self.message = stage, code, message

    @classmethod
    def of(cls, stage: int, error: UpstreamError) -> StageFailure:
        """The failure of a service call made for `stage`, e.g. "translate_in: <details>"."""
        name = gw.Stage.Name(stage).removeprefix("STAGE_").lower()
        return cls(stage, error.code.name, f"{name}: {error.details}")


@dataclass
class SessionOptions:
    """A session's settings after the gateway's defaults are applied."""

    user_language: str
    pivot_language: str
    audio_out: bool
    client_brain: bool
    system_prompt: str | None
    sampling: llm_pb2.SamplingOptions
    voice: str | None
    sample_rate_hz: int | None
    encoding: int
    speed: float | None
    max_history_turns: int
    barge_in: bool

    @property
    def translates(self) -> bool:
        """True when the user and pivot languages differ, so text is translated both ways."""
        return self.user_language != self.pivot_language


@dataclass
class Timings:
    """A turn's stage durations in ms, by stage name (e.g. "llm_first_token"), the first
    measure of each kept; `t0` is time.monotonic() at the turn's start, in s."""

    t0: float  # end of speech, or the text's arrival
    marks: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, seconds: float) -> None:
        """Record stage `name` as `seconds` long, unless it already has a measure, and
        observe it in milo_gateway_stage_seconds."""
        if name not in self.marks:
            self.marks[name] = seconds * 1000
            metrics.STAGE_SECONDS.labels(name).observe(seconds)


def sayable(text: str) -> bool:
    """True when the text has something to say: a letter or a digit in any script. A
    sentence of only emoji, '#' or punctuation is shown but never sent to TTS."""
    return any(char.isalnum() for char in text)


class Turn:
    """One turn's stages and events: `emit` receives each ConverseResponse for the client;
    `t0` (time.monotonic(), s) is the end of speech or the text's arrival. A stage's failed
    service call raises StageFailure."""

    def __init__(
        self,
        turn_id: int,
        options: SessionOptions,
        upstream: Upstream,
        settings: GatewaySettings,
        emit: Callable[..., None],
        t0: float,
    ) -> None:
        self.id, self.options, self.upstream, self.settings = turn_id, options, upstream, settings
        self._emit = emit
        self.timings = Timings(t0)
        self.completion_tokens: int | None = None
        self._audio_index = 0
        self._audio_offset_ms = 0.0
        self._first_audio_sent = False
        self._refused: StageFailure | None = None  # the first sentence TTS refused

    def emit(self, **event: Any) -> None:
        """Send one event of this turn, e.g. emit(llm_delta=gw.LlmDelta(text="Bon"))."""
        self._emit(gw.ConverseResponse(turn_id=self.id, **event))

    # ---- stages -------------------------------------------------------------------------

    async def translate(self, text: str, source: str, target: str, stage: int) -> str:
        """`text` translated from language `source` to `target`; a failed call raises
        StageFailure for `stage`."""
        request = translate_pb2.TranslateRequest(
            texts=[text], source_language=source, target_language=target
        )
        try:
            reply = await self.upstream.unary("translate", "Translate", request)
        except UpstreamError as exc:
            raise StageFailure.of(stage, exc) from exc
        return str(reply.translations[0].text)

    async def to_pivot(self, text: str) -> str:
        """The user's `text` in the pivot language (as is when no translation is needed),
        with its translation event and translate_in timing; raises StageFailure."""
        o = self.options
        if not o.translates:
            return text
        start = time.monotonic()
        pivot = await self.translate(
            text, o.user_language, o.pivot_language, Stage.STAGE_TRANSLATE_IN
        )
        self.timings.stage("translate_in", time.monotonic() - start)
        self.emit(
            translation=gw.TranslationEvent(
                direction=gw.DIRECTION_USER_TO_PIVOT,
                source_text=text,
                text=pivot,
                source_language=o.user_language,
                target_language=o.pivot_language,
            )
        )
        return pivot

    async def llm_deltas(self, messages: list[llm_pb2.Message]) -> AsyncIterator[str]:
        """Stream the LLM's reply; closing the stream (or cancelling the consumer) cancels
        the call upstream."""
        request = llm_pb2.ChatRequest(messages=messages, sampling=self.options.sampling)
        first_token_s = self.settings.llm_first_token_timeout_s
        start, first = time.monotonic(), True
        try:
            async with self.upstream.stream("llm", "Chat", request, first_token_s) as replies:
                async for reply in replies:
                    if reply.HasField("done"):
                        self.completion_tokens = reply.done.usage.completion_tokens
                    elif reply.delta.text:
                        if first:
                            self.timings.stage("llm_first_token", time.monotonic() - start)
                            first = False
                        self.emit(llm_delta=gw.LlmDelta(text=reply.delta.text))
                        yield reply.delta.text
        except UpstreamError as exc:
            raise StageFailure.of(Stage.STAGE_LLM, exc) from exc

    # ---- the reply pipeline --------------------------------------------------------------

    async def speak(self, deltas: AsyncIterator[str]) -> None:
        """Cut, translate and synthesize the reply, sentence by sentence, in order."""
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        ready: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        start = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._cut(deltas, sentences, start))
                group.create_task(self._translate_out(sentences, ready))
                group.create_task(self._synthesize(ready))
        except* StageFailure as failures:
            raise failures.exceptions[0] from None

    async def _cut(
        self, deltas: AsyncIterator[str], out: asyncio.Queue[str | None], start: float
    ) -> None:
        cutter = SentenceCutter(self.settings.max_sentence_chars)
        try:
            # aclosing: a barge-in that lands between two deltas closes the stream at once,
            # which cancels the LLM call (else it runs on until the generator is collected)
            async with contextlib.aclosing(deltas) as stream:  # type: ignore[type-var]
                async for delta in stream:
                    for sentence in cutter.feed(delta):
                        self.timings.stage("first_sentence", time.monotonic() - start)
                        await out.put(sentence)
            for sentence in cutter.flush():
                self.timings.stage("first_sentence", time.monotonic() - start)
                await out.put(sentence)
        finally:
            out.put_nowait(None)

    async def _translate_out(
        self, inp: asyncio.Queue[str | None], out: asyncio.Queue[tuple[str, str] | None]
    ) -> None:
        o, index = self.options, 0
        try:
            while (pivot := await inp.get()) is not None:
                text = pivot
                if o.translates and sayable(pivot):  # nothing to translate in "😀" or "#"
                    begin = time.monotonic()
                    text = await self.translate(
                        pivot, o.pivot_language, o.user_language, Stage.STAGE_TRANSLATE_OUT
                    )
                    self.timings.stage("translate_out_first", time.monotonic() - begin)
                    metrics.STAGE_SECONDS.labels("translate_out").observe(time.monotonic() - begin)
                self.emit(
                    reply_sentence=gw.ReplySentence(
                        sentence_index=index, pivot_text=pivot, text=text
                    )
                )
                await out.put((pivot, text))
                index += 1
        finally:
            out.put_nowait(None)

    async def _synthesize(self, inp: asyncio.Queue[tuple[str, str] | None]) -> None:
        """Speak each sentence in order. One with nothing to say, or one TTS refuses as
        INVALID_ARGUMENT, is skipped (and counted) and the rest of the reply is spoken; if
        nothing at all could be spoken, the first refusal fails the turn."""
        index = 0
        while (item := await inp.get()) is not None:
            if self.options.audio_out:
                await self._say(item[1], index)
            index += 1
        if self._refused is not None and not self._first_audio_sent:
            raise self._refused

    async def _say(self, text: str, sentence_index: int) -> None:
        if not sayable(text):
            metrics.UNSPOKEN_SENTENCES.labels("nothing_to_say").inc()
            return
        try:
            await self._tts(text, sentence_index)
        except StageFailure as failure:
            if failure.code != grpc.StatusCode.INVALID_ARGUMENT.name:
                raise
            log.info(
                "turn %d: TTS refused sentence %d, skipped: %s",
                self.id,
                sentence_index,
                failure.message,
            )
            metrics.UNSPOKEN_SENTENCES.labels("tts_refused").inc()
            self._refused = self._refused or failure

    async def _tts(self, text: str, sentence_index: int) -> None:
        o = self.options
        request = tts_pb2.SynthesizeRequest(
            text=text,
            voice=o.voice,
            speed=o.speed,
            sample_rate_hz=o.sample_rate_hz,
            encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
        )
        begin, audio_format = time.monotonic(), None
        try:
            async with self.upstream.stream("tts", "Synthesize", request) as replies:
                async for reply in replies:
                    if reply.HasField("format"):
                        audio_format = reply.format
                    elif reply.HasField("audio"):
                        self.timings.stage("tts_first_audio", time.monotonic() - begin)
                        self._send_audio(reply.audio, audio_format, sentence_index)
        except UpstreamError as exc:
            raise StageFailure.of(Stage.STAGE_TTS, exc) from exc

    def _send_audio(
        self, chunk: audio_pb2.AudioChunk, fmt: audio_pb2.AudioFormat | None, sentence_index: int
    ) -> None:
        first = not self._first_audio_sent
        data = chunk.data
        out_format = None
        if first and fmt is not None:
            out_format = audio_pb2.AudioFormat(
                encoding=self.options.encoding or audio_pb2.AUDIO_ENCODING_PCM_S16LE,
                sample_rate_hz=fmt.sample_rate_hz,
                channels=fmt.channels or 1,
            )
            if self.options.encoding == audio_pb2.AUDIO_ENCODING_WAV:
                data = streaming_wav_header(fmt.sample_rate_hz, fmt.channels or 1) + data
        if first:
            self._first_audio_sent = True
            waited = time.monotonic() - self.timings.t0
            self.timings.marks["end_of_speech_to_first_audio"] = waited * 1000
            metrics.FIRST_AUDIO_SECONDS.observe(waited)
        out = audio_pb2.AudioChunk(
            data=data,
            index=self._audio_index,
            offset_ms=self._audio_offset_ms,
            duration_ms=chunk.duration_ms,
        )
        self._audio_index += 1
        self._audio_offset_ms += chunk.duration_ms
        self.emit(audio=gw.AudioOut(format=out_format, chunk=out, sentence_index=sentence_index))

    def latency(self) -> gw.LatencyBreakdown:
        """The turn's latency breakdown so far, in ms; a stage not reached is unset."""
        m = self.timings.marks
        return gw.LatencyBreakdown(
            stt_final_ms=m.get("stt_final"),
            translate_in_ms=m.get("translate_in"),
            llm_first_token_ms=m.get("llm_first_token"),
            first_sentence_ms=m.get("first_sentence"),
            translate_out_first_ms=m.get("translate_out_first"),
            tts_first_audio_ms=m.get("tts_first_audio"),
            end_of_speech_to_first_audio_ms=m.get("end_of_speech_to_first_audio"),
            turn_total_ms=(time.monotonic() - self.timings.t0) * 1000,
            llm_completion_tokens=self.completion_tokens,
        )
