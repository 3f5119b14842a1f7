"""The milo.tts.v1.Tts servicer: protobuf in, domain call on the core, protobuf out. Bad
input raises the runtime's typed errors; the interceptor maps them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.tts import convert
from services.tts.core import TtsCore


class TtsServicer(tts_pb2_grpc.TtsServicer):
    """The Tts gRPC servicer over a TtsCore."""

    def __init__(self, core: TtsCore) -> None:
        self.core = core

    async def Describe(
        self, request: tts_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.DescribeResponse:
        return convert.describe(self.core)

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        job = self.core.prepare(convert.options(request))
        yield convert.format_response(job)
        async for event in self.core.stream(job):
            yield convert.response(event)
