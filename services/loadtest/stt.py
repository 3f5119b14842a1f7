"""STT target: speech streamed to StreamingRecognize at real-time pace (or faster), then
silence so that the VAD ends the utterance, then half-close. The first result ("first
transcript") is the first partial or final result; "final after speech" is the time from
the last chunk of speech sent to the last final result. A stream with no final result fails
as NO_RESULT. With `--unary`, each clip goes to Recognize in one piece.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.loadtest.audio import Speech, paced, speech_payloads
from services.loadtest.target import InBandError, Probe, TargetOptions


def pcm_format(speech: Speech) -> audio_pb2.AudioFormat:
    """The AudioFormat of a clip: s16le PCM at its rate and channel count."""
    return audio_pb2.AudioFormat(
        encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
        sample_rate_hz=speech.sample_rate,
        channels=speech.channels,
    )


class SpeechTimes:
    """When the last chunk of speech (not the trailing silence) was handed to gRPC."""

    def __init__(self) -> None:
        self.end_of_speech: float | None = None

    async def chunks(self, speech: Speech, options: TargetOptions) -> AsyncIterator[bytes]:
        """The clip then `tail_silence_ms` of silence, in chunks paced as `options` say; notes
        when the last chunk of speech left."""
        spoken = speech.chunks(options.chunk_ms)
        silence = Speech(
            "", speech.silence(options.tail_silence_ms), speech.sample_rate, speech.channels
        ).chunks(options.chunk_ms)
        sent = 0
        async for chunk in paced(spoken + silence, options.chunk_ms / 1000, options.audio_pace):
            yield chunk
            sent += 1
            if sent == len(spoken):
                self.end_of_speech = time.monotonic()


class SttTarget:
    """Load on the STT service: StreamingRecognize (first transcript) or, with `unary`,
    Recognize; units are seconds of audio."""

    name = "stt"
    units = "audio s"

    def __init__(self, channel: grpc.aio.Channel, options: TargetOptions) -> None:
        self.stub = stt_pb2_grpc.SttStub(channel)
        self.options = options
        self.first_result = "" if options.unary else "first transcript"
        self.language = options.language or "en"

    async def describe(self) -> str:
        """The model id and device, from Describe; also settles the spoken language."""
        reply = await self.stub.Describe(
            stt_pb2.DescribeRequest(), timeout=10, metadata=self.options.metadata
        )
        self.language = self.options.language or reply.default_language or "en"
        return f"{reply.model_id} on {reply.device}, speech in {self.language!r}"

    async def payloads(self, workdir: Path) -> list[Speech]:
        """Speech clips: the user's WAV files, else sentences synthesized in the language."""
        o = self.options
        return await asyncio.to_thread(
            speech_payloads, list(o.payload_files), self.language, o.speech_rate_hz, workdir
        )

    async def call(self, payload: Speech, probe: Probe, deadline_s: float) -> None:
        """One Recognize or StreamingRecognize call for the clip; raises AioRpcError on failure."""
        probe.add_units(payload.duration_s)
        if self.options.unary:
            await self.stub.Recognize(
                stt_pb2.RecognizeRequest(
                    config=stt_pb2.RecognitionConfig(language=self.options.language),
                    format=pcm_format(payload),
                    audio=payload.pcm,
                ),
                timeout=deadline_s,
                metadata=self.options.metadata,
            )
            return
        await self._stream(payload, probe, deadline_s)

    async def _stream(self, speech: Speech, probe: Probe, deadline_s: float) -> None:
        times = SpeechTimes()
        config = stt_pb2.StreamingConfig(
            format=pcm_format(speech),
            recognition=stt_pb2.RecognitionConfig(language=self.options.language),
        )

        async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
            yield stt_pb2.StreamingRecognizeRequest(config=config)
            async for chunk in times.chunks(speech, self.options):
                yield stt_pb2.StreamingRecognizeRequest(audio=chunk)

        last_final = None
        call = self.stub.StreamingRecognize(
            requests(), timeout=deadline_s, metadata=self.options.metadata
        )
        try:
            async for reply in call:
                if reply.HasField("result"):
                    probe.first()
                    if reply.result.is_final:
                        last_final = time.monotonic()
        finally:
            call.cancel()
        if last_final is None:
            raise InBandError("NO_RESULT", "the stream ended without a final result")
        if times.end_of_speech is not None:
            probe.span("final after speech", max(0.0, last_final - times.end_of_speech))
