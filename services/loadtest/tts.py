"""TTS target: one streamed Synthesize per request, reply-length Malagasy texts; the first
result is the first audio chunk."""

from __future__ import annotations

from pathlib import Path

import grpc

from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.loadtest import payloads
from services.loadtest.target import InBandError, Probe, TargetOptions


class TtsTarget:
    """Load on the TTS service's Synthesize: first audio chunk and seconds of audio."""

    name = "tts"
    first_result = "first audio chunk"
    units = "audio s"

    def __init__(self, channel: grpc.aio.Channel, options: TargetOptions) -> None:
        self.stub = tts_pb2_grpc.TtsStub(channel)
        self.options = options

    async def describe(self) -> str:
        """The model id and device, from Describe."""
        reply = await self.stub.Describe(
            tts_pb2.DescribeRequest(), timeout=10, metadata=self.options.metadata
        )
        return f"{reply.model_id} on {reply.device}"

    async def payloads(self, workdir: Path) -> list[tts_pb2.SynthesizeRequest]:
        """SynthesizeRequests from the user's files, else built-in Malagasy replies; raises
        ValueError for a malformed record."""
        if not self.options.payload_files:
            return [self._request(t) for t in payloads.MALAGASY_REPLIES]
        return [
            self._request(record, str(path))
            for path in self.options.payload_files
            for record in payloads.read_records(path)
        ]

    def _request(self, record: object, where: str = "") -> tts_pb2.SynthesizeRequest:
        """A text, or {"text": ..., "voice": ..., "speed": ...}."""
        text = str(payloads.field_of(record, "text", where))
        voice, speed = self.options.voice, None
        if isinstance(record, dict):
            voice = record.get("voice", voice)
            speed = record.get("speed")
        return tts_pb2.SynthesizeRequest(text=text, voice=voice, speed=speed)

    async def call(
        self, payload: tts_pb2.SynthesizeRequest, probe: Probe, deadline_s: float
    ) -> None:
        """One Synthesize call; raises InBandError "INCOMPLETE" if the stream ends without its
        done message."""
        done = False
        async for reply in self.stub.Synthesize(
            payload, timeout=deadline_s, metadata=self.options.metadata
        ):
            if reply.HasField("audio"):
                probe.first()
                probe.add_units(reply.audio.duration_ms / 1000)
            elif reply.HasField("done"):
                done = True
        if not done:
            raise InBandError("INCOMPLETE", "the stream ended without SynthesisDone")
