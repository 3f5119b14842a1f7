"""The `milo.gateway.v1.Conversation` servicer: a thin gRPC adapter over GatewayCore.

Each RPC unwraps the gateway's request message, calls the core (the same code the HTTP
bridge calls) and wraps the answer; the core's typed errors become status codes in the
runtime's interceptor. Every stream from the core is closed explicitly when the call ends
(`conversation` is a context manager, the others are iterated under `aclosing`), so a
client that goes away cancels the LLM and TTS calls at once, not when the garbage
collector finds the abandoned stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from gateway.core import GatewayCore
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc

__all__ = ["ConversationServicer"]


class ConversationServicer(gateway_pb2_grpc.ConversationServicer):
    """Conversation's RPCs over `core`; each RPC is documented in protos/ (gateway.proto)."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    async def Describe(
        self, request: gw.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> gw.DescribeResponse:
        return self.core.describe()

    async def Converse(
        self,
        request_iterator: AsyncIterator[gw.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[gw.ConverseResponse]:
        async with self.core.conversation(request_iterator) as events:
            async for event in events:
                yield event

    async def Transcribe(
        self, request: gw.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> gw.TranscribeResponse:
        return gw.TranscribeResponse(response=await self.core.transcribe(request.request))

    async def Translate(
        self, request: gw.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> gw.TranslateResponse:
        return gw.TranslateResponse(response=await self.core.translate(request.request))

    async def Chat(
        self, request: gw.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gw.ChatResponse]:
        async with aclosing(self.core.chat(request.request)) as replies:
            async for reply in replies:
                yield gw.ChatResponse(response=reply)

    async def Speak(
        self, request: gw.SpeakRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gw.SpeakResponse]:
        async with aclosing(self.core.speak(request.request)) as replies:
            async for reply in replies:
                yield gw.SpeakResponse(response=reply)
