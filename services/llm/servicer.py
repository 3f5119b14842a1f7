"""The milo.llm.v1.Llm servicer: protobuf in, domain call on the core, protobuf out. Bad
input raises the runtime's typed errors; the interceptor maps them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from services.llm import convert
from services.llm.core import LlmCore
from services.llm.domain import Piece


class LlmServicer(llm_pb2_grpc.LlmServicer):
    """The Llm gRPC servicer over an LlmCore."""

    def __init__(self, core: LlmCore) -> None:
        self.core = core

    async def Describe(
        self, request: llm_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.DescribeResponse:
        return convert.describe(self.core)

    async def Chat(
        self, request: llm_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ChatResponse]:
        received = time.monotonic()
        chat = convert.chat_request(request, self.core.defaults)
        async with aclosing(self.core.chat(chat, received)) as replies:
            async for out in replies:
                yield convert.delta(out.text) if isinstance(out, Piece) else convert.done(out)
