"""The session's ear: a StreamingRecognize call fed with the client's audio.

Opened on the first audio chunk (after a failure, on the next one). STT events become
session events: speech started (which barges in on a reply in progress), partial and final
transcripts; each final transcript starts a turn. END_OF_UTTERANCE half-closes the STT
stream, which makes it finalize what it heard; the next audio opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import grpc

from gateway import metrics
from milo.gateway.v1 import gateway_pb2 as gw
from milo.stt.v1 import stt_pb2

if TYPE_CHECKING:
    from gateway.session import Session

log = logging.getLogger(__name__)
_END = object()


class Listener:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._audio: asyncio.Queue[object] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._utterance_turn = 0  # turn id of the utterance being heard, 0 when none
        self._speech_ended_at: float | None = None

    def _stream_config(self) -> stt_pb2.StreamingRecognizeRequest:
        c, o = self.session.config, self.session.options
        config = stt_pb2.StreamingConfig(
            format=c.input_format,
            recognition=stt_pb2.RecognitionConfig(language=o.user_language),
            vad=c.vad,
            partial_results=c.partial_results if c.HasField("partial_results") else True,
        )
        return stt_pb2.StreamingRecognizeRequest(config=config)

    async def feed(self, audio: bytes) -> None:
        if self._audio is None:
            self._open()
        assert self._audio is not None
        await self._audio.put(audio)

    def _open(self) -> None:
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
        self._audio = queue
        self._reader = asyncio.create_task(self._read(queue))

    async def _requests(self, queue: asyncio.Queue[object]):  # type: ignore[no-untyped-def]
        yield self._stream_config()
        while (chunk := await queue.get()) is not _END:
            yield stt_pb2.StreamingRecognizeRequest(audio=chunk)  # type: ignore[arg-type]

    async def _read(self, queue: asyncio.Queue[object]) -> None:
        backends = self.session.backends
        await backends.connected("stt")
        call = backends.stt.StreamingRecognize(self._requests(queue), metadata=backends.metadata)
        try:
            async for event in call:
                await self._on_event(event)
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
        finally:
            call.cancel()
            if self._audio is queue:
                self._audio = None

    def _failed(self, exc: grpc.aio.AioRpcError) -> None:
        turn_id = self._utterance_turn or self.session.next_turn_id()
        self._utterance_turn = 0
        log.info("session %s: STT stream failed: %s %s", self.session.id, exc.code().name,
                 exc.details())
        metrics.TURN_ERRORS.labels("STAGE_STT", exc.code().name).inc()
        self.session.emit(turn_id, error=gw.TurnError(
            stage=gw.STAGE_STT, code=exc.code().name, message=f"stt: {exc.details()}"))
        self.session.emit(turn_id, turn_ended=gw.TurnEnded(reason=gw.TurnEnded.REASON_ERROR))

    async def _on_event(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        kind, s = event.WhichOneof("event"), self.session
        if kind == "speech_started":
            if s.options.barge_in:
                s.barge_in()
            self._utterance_turn = s.next_turn_id()
            self._speech_ended_at = None
            s.emit(self._utterance_turn, speech_started=event.speech_started)
        elif kind == "speech_ended":
            self._speech_ended_at = time.monotonic()
            s.emit(self._turn_id(), speech_ended=event.speech_ended)
        elif kind == "result":
            await self._on_result(event)

    def _turn_id(self) -> int:
        if not self._utterance_turn:
            self._utterance_turn = self.session.next_turn_id()
        return self._utterance_turn

    async def _on_result(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        result, turn_id = event.result, self._turn_id()
        self.session.emit(turn_id, transcript=gw.Transcript(
            is_final=result.is_final, text=result.text, language=result.language,
            audio_processed_ms=event.audio_processed_ms))
        if not result.is_final:
            return
        self._utterance_turn = 0
        now = time.monotonic()
        t0 = self._speech_ended_at or now
        if not result.text.strip():
            self.session.emit(turn_id, turn_ended=gw.TurnEnded(reason=gw.TurnEnded.REASON_EMPTY))
            return
        await self.session.start_turn(turn_id, result.text, t0, stt_final_s=now - t0)

    async def end_utterance(self) -> None:
        """Half-close the STT stream: it finalizes what it has heard."""
        if self._audio is not None:
            await self._audio.put(_END)
            self._audio = None

    async def finish(self) -> None:
        """End of the client's stream: finalize what was heard, wait for the last result."""
        await self.end_utterance()
        if self._reader is not None:
            await asyncio.wait({self._reader})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
