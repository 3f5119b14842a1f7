"""LLM target: one streamed Chat per request; the first result is the first token."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from services.loadtest import payloads
from services.loadtest.target import Probe, TargetOptions

ROLES = {
    "system": llm_pb2.ROLE_SYSTEM,
    "user": llm_pb2.ROLE_USER,
    "assistant": llm_pb2.ROLE_ASSISTANT,
}


class LlmTarget:
    """Load on the LLM's Chat: first token and completion tokens per request."""

    name = "llm"
    first_result = "first token"
    units = "tokens"

    def __init__(self, channel: grpc.aio.Channel, options: TargetOptions) -> None:
        self.stub = llm_pb2_grpc.LlmStub(channel)
        self.options = options

    async def describe(self) -> str:
        """The model id and device, from Describe."""
        reply = await self.stub.Describe(
            llm_pb2.DescribeRequest(), timeout=10, metadata=self.options.metadata
        )
        return f"{reply.model_id} on {reply.device}"

    async def payloads(self, workdir: Path) -> list[llm_pb2.ChatRequest]:
        """ChatRequests from the user's files (prompts or message lists), else the built-in
        prompts; raises ValueError for a malformed record."""
        if not self.options.payload_files:
            return [self._request(p) for p in payloads.CHAT_PROMPTS]
        return [
            self._request(record, str(path))
            for path in self.options.payload_files
            for record in payloads.read_records(path)
        ]

    def _request(self, record: object, where: str = "") -> llm_pb2.ChatRequest:
        """A prompt string, or {"prompt": ...} / {"messages": [{"role", "content"}], ...}."""
        if isinstance(record, dict) and "messages" in record:
            try:
                messages = [
                    llm_pb2.Message(role=ROLES[m["role"]], content=str(m["content"]))
                    for m in record["messages"]
                ]
            except (KeyError, TypeError) as exc:
                raise ValueError(
                    f"{where}: each message needs a role (system, user, "
                    f"assistant) and a content: {record!r}"
                ) from exc
        else:
            prompt = str(payloads.field_of(record, "prompt", where))
            messages = [llm_pb2.Message(role=llm_pb2.ROLE_USER, content=prompt)]
        max_tokens = self.options.max_tokens
        if isinstance(record, dict) and "max_tokens" in record:
            max_tokens = int(record["max_tokens"])
        sampling = llm_pb2.SamplingOptions(max_tokens=max_tokens)
        return llm_pb2.ChatRequest(messages=messages, sampling=sampling)

    async def call(self, payload: llm_pb2.ChatRequest, probe: Probe, deadline_s: float) -> None:
        """One Chat call; counts the completion tokens and records the mean time between tokens."""
        first = last = 0.0
        deltas = 0
        async for reply in self.stub.Chat(
            payload, timeout=deadline_s, metadata=self.options.metadata
        ):
            if reply.HasField("delta"):
                last = time.monotonic()
                if not deltas:
                    probe.first()
                    first = last
                deltas += 1
            elif reply.HasField("done"):
                probe.add_units(reply.done.usage.completion_tokens)
        if deltas > 1:
            probe.span("between tokens", (last - first) / (deltas - 1))
