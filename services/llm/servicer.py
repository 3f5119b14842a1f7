"""The milo.llm.v1.Llm servicer: protobuf in, the chat runner, protobuf out. No model code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import grpc

from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from services.llm import convert
from services.llm.chat import ChatRunner
from services.llm.domain import Piece


class LlmServicer(llm_pb2_grpc.LlmServicer):
    def __init__(
        self,
        runner: ChatRunner,
        defaults: convert.Defaults,
        describe: Callable[[], llm_pb2.DescribeResponse],
    ) -> None:
        self._runner, self._defaults, self._describe = runner, defaults, describe

    async def Describe(
        self, request: llm_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.DescribeResponse:
        return self._describe()

    async def Chat(
        self, request: llm_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ChatResponse]:
        received = time.monotonic()
        chat = convert.chat_request(request, self._defaults)
        async with aclosing(self._runner.chat(chat, received)) as replies:
            async for out in replies:
                yield convert.delta(out.text) if isinstance(out, Piece) else convert.done(out)
