"""The milo.translate.v1.Translator servicer: protobuf in, domain call on the core,
protobuf out. Bad input raises the runtime's typed errors; the interceptor maps them."""

from __future__ import annotations

import time

import grpc

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.translate import convert
from services.translate.core import TranslateCore


class TranslatorServicer(translate_pb2_grpc.TranslatorServicer):
    """The Translator gRPC servicer over a TranslateCore."""

    def __init__(self, core: TranslateCore) -> None:
        self.core = core

    async def Describe(
        self, request: translate_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> translate_pb2.DescribeResponse:
        return convert.describe(self.core)

    async def Translate(
        self, request: translate_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> translate_pb2.TranslateResponse:
        start = time.monotonic()
        result = await self.core.translate(
            list(request.texts),
            request.source_language,
            request.target_language,
            convert.beam_size(request),
        )
        return convert.translate_response(result, time.monotonic() - start)
