"""Gateway target: one conversation turn per request over Converse. Speech is streamed in at
real-time pace (or faster) followed by silence, then the stream is half-closed and every
event read until the gateway ends it. The first result is the first reply audio (the first
reply sentence with text output); "first audio after speech" counts from the last chunk of
speech sent (or the text sent). A TurnError is recorded under its status code name, a turn
that ends with no reply as NO_REPLY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from services.loadtest import payloads
from services.loadtest.audio import Speech, speech_payloads
from services.loadtest.stt import SpeechTimes, pcm_format
from services.loadtest.target import InBandError, Probe, TargetOptions

Payload = Speech | str


class Turn:
    """What one Converse stream showed, as it goes."""

    def __init__(self, probe: Probe, text_output: bool) -> None:
        self.probe, self.text_output = probe, text_output
        self.first_out: float | None = None
        self.final_transcript: float | None = None
        self.completed = 0
        self.ended_empty = False

    def see(self, reply: gw.ConverseResponse) -> None:
        """Note one event of the stream: first output, final transcript, audio seconds, turn end.
        Raises InBandError for a turn error."""
        kind = reply.WhichOneof("event")
        now = time.monotonic()
        if kind == "error":
            stage = gw.Stage.Name(reply.error.stage)
            raise InBandError(reply.error.code or "UNKNOWN", f"{stage}: {reply.error.message}")
        if kind == "transcript" and reply.transcript.is_final and self.final_transcript is None:
            self.final_transcript = now
        elif kind == "audio" or (kind == "reply_sentence" and self.text_output):
            self.probe.first()
            if self.first_out is None:
                self.first_out = now
            if kind == "audio":
                self.probe.add_units(reply.audio.chunk.duration_ms / 1000)
        elif kind == "turn_ended":
            reason = reply.turn_ended.reason
            self.completed += reason == gw.TurnEnded.REASON_COMPLETED
            self.ended_empty |= reason == gw.TurnEnded.REASON_EMPTY


class GatewayTarget:
    """Load on the gateway's Converse: one speech or text turn per request, measured from the end
    of speech to the first reply audio (or sentence, with text output)."""

    name = "gateway"
    units = "reply audio s"

    def __init__(self, channel: grpc.aio.Channel, options: TargetOptions) -> None:
        self.stub = gateway_pb2_grpc.ConversationStub(channel)
        self.options = options
        self.language = options.language or "mg"
        self.first_result = "first reply sentence" if options.text_output else "first audio"

    async def describe(self) -> str:
        """The gateway's version and dependencies; also settles the spoken language."""
        reply = await self.stub.Describe(
            gw.DescribeRequest(), timeout=10, metadata=self.options.metadata
        )
        self.language = self.options.language or reply.default_user_language or "mg"
        deps = ", ".join(f"{d.name} {d.status}" for d in reply.dependencies)
        return f"gateway {reply.version} ({deps}), user language {self.language!r}"

    async def payloads(self, workdir: Path) -> list[Payload]:
        """Speech clips (the user's WAV files, else synthesized sentences), or texts with
        `text_input`. Raises ValueError for an unusable file."""
        o = self.options
        if not o.text_input:
            speech = await asyncio.to_thread(
                speech_payloads, list(o.payload_files), self.language, o.speech_rate_hz, workdir
            )
            return list(speech)
        if not o.payload_files:
            return list(payloads.speech_texts(self.language))
        return [
            str(payloads.field_of(r, "text", str(path)))
            for path in o.payload_files
            for r in payloads.read_records(path)
        ]

    def _config(self, payload: Payload) -> gw.SessionConfig:
        o = self.options
        config = gw.SessionConfig(
            user_language=o.language,
            output_mode=gw.OUTPUT_MODE_TEXT if o.text_output else None,
            voice=o.voice,
        )
        if isinstance(payload, Speech):
            config.input_format.CopyFrom(pcm_format(payload))
        if o.max_tokens is not None:
            config.sampling.CopyFrom(llm_pb2.SamplingOptions(max_tokens=o.max_tokens))
        return config

    async def call(self, payload: Payload, probe: Probe, deadline_s: float) -> None:
        """One Converse call of one turn; raises AioRpcError or InBandError when it fails."""
        times = SpeechTimes()
        if isinstance(payload, str):
            times.end_of_speech = time.monotonic()

        async def requests() -> AsyncIterator[gw.ConverseRequest]:
            yield gw.ConverseRequest(config=self._config(payload))
            if isinstance(payload, str):
                yield gw.ConverseRequest(text=gw.UserText(text=payload))
                return
            async for chunk in times.chunks(payload, self.options):
                yield gw.ConverseRequest(audio=chunk)

        turn = Turn(probe, self.options.text_output)
        call = self.stub.Converse(requests(), timeout=deadline_s, metadata=self.options.metadata)
        try:
            async for reply in call:
                turn.see(reply)
        finally:
            call.cancel()
        _check(turn)
        _spans(turn, times.end_of_speech, probe)


def _check(turn: Turn) -> None:
    if turn.completed:
        return
    if turn.ended_empty:
        raise InBandError("NO_REPLY", "the turn ended empty: no speech was recognized")
    raise InBandError("NO_REPLY", "the stream ended without a completed turn")


def _spans(turn: Turn, end_of_speech: float | None, probe: Probe) -> None:
    if end_of_speech is None:
        return
    if turn.first_out is not None:
        name = "first sentence after speech" if turn.text_output else "first audio after speech"
        probe.span(name, max(0.0, turn.first_out - end_of_speech))
    if turn.final_transcript is not None and turn.final_transcript >= end_of_speech:
        probe.span("final transcript after speech", turn.final_transcript - end_of_speech)
