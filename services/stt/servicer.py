"""The `milo.stt.v1.Stt` servicer: protobuf in, domain calls on the core, protobuf out.
Bad input raises the runtime's typed errors; the interceptor turns them into statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.runtime.errors import InvalidArgument
from services.stt import convert, metrics
from services.stt.core import RequestOptions, SttCore
from services.stt.stream import StreamSession, run_stream

_RAW = (audio_pb2.AUDIO_ENCODING_PCM_S16LE, audio_pb2.AUDIO_ENCODING_PCM_F32LE)


class SttServicer(stt_pb2_grpc.SttServicer):
    """The Stt gRPC servicer over an SttCore."""

    def __init__(self, core: SttCore, info: convert.ServerInfo) -> None:
        self.core, self.info = core, info

    async def Describe(
        self, request: stt_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.DescribeResponse:
        return convert.describe(self.core, self.info)

    async def Recognize(
        self, request: stt_pb2.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.RecognizeResponse:
        options = (
            convert.request_options(request.config)
            if request.HasField("config")
            else RequestOptions()
        )
        spec = convert.audio_spec(request.format)
        result = await self.core.recognize(request.audio, spec, options)
        return convert.recognize_response(result)

    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("request") != "config":
            what = "no message" if first is None else "audio"
            raise InvalidArgument(f"the first message must be the StreamingConfig; got {what}")
        session = self._open(first.config)
        async for emitted in run_stream(
            session, _audio(requests, session.options.spec.rate, session.options.spec.frame_bytes)
        ):
            yield convert.stream_response(emitted)

    def _open(self, config: stt_pb2.StreamingConfig) -> StreamSession:
        if config.format.encoding not in _RAW:
            raise InvalidArgument(
                "streaming audio must be raw PCM: set config.format.encoding to PCM_S16LE or "
                "PCM_F32LE, with sample_rate_hz and channels"
            )
        interval = (
            config.partial_interval_ms
            if config.HasField("partial_interval_ms")
            else self.core.defaults.partial_interval_ms
        )
        if not 100 <= interval <= 30_000:
            raise InvalidArgument(
                f"partial_interval_ms must be between 100 and 30000, got {interval}"
            )
        return self.core.open_stream(
            convert.audio_spec(config.format),
            convert.request_options(config.recognition),
            convert.vad_params(self.core, config.vad),
            partials=(
                config.partial_results
                if config.HasField("partial_results")
                else self.core.defaults.partial_results
            ),
            partial_interval_ms=interval,
        )


async def _audio(
    requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest], rate: int, frame_bytes: int
) -> AsyncIterator[bytes]:
    """The audio of the messages after the config; a second config is an error."""
    async for request in requests:
        if request.WhichOneof("request") == "config":
            raise InvalidArgument("the StreamingConfig may be sent only once, as the first message")
        if request.audio:
            metrics.AUDIO_SECONDS.labels("StreamingRecognize").inc(
                len(request.audio) / frame_bytes / rate if rate else 0.0
            )
            yield request.audio
