"""The `milo.gateway.v1.Conversation` servicer: a thin gRPC adapter over GatewayCore.

Each RPC unwraps the gateway's request message, calls the core (the same code the HTTP
bridge calls) and wraps the answer; the core's typed errors become status codes in the
runtime's interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.core import GatewayCore, session_options, upstream
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc

__all__ = ["ConversationServicer", "session_options", "upstream"]


class ConversationServicer(gateway_pb2_grpc.ConversationServicer):
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    async def Describe(self, request, context):
        return self.core.describe()

    async def Converse(self, request_iterator, context) -> AsyncIterator[gw.ConverseResponse]:
        async for event in self.core.converse(request_iterator):
            yield event

    async def Transcribe(self, request, context):
        return gw.TranscribeResponse(response=await self.core.transcribe(request.request))

    async def Translate(self, request, context):
        return gw.TranslateResponse(response=await self.core.translate(request.request))

    async def Chat(self, request, context):
        async for reply in self.core.chat(request.request):
            yield gw.ChatResponse(response=reply)

    async def Speak(self, request, context):
        async for reply in self.core.speak(request.request):
            yield gw.SpeakResponse(response=reply)
