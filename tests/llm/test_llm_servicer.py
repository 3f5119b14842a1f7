"""Tier 2: the LLM servicer on a real gRPC server (port 0) around a scripted fake engine."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from milo.llm.v1 import llm_pb2
from services.llm.config import DEFAULT_SYSTEM_PROMPT
from services.llm.domain import FinishReason, Role

sys.path.insert(0, str(Path(__file__).parent))
from llm_fakes import WORDS, FakeEngine, chat, collect, user
from procs import wait_until

ASSISTANT = llm_pb2.ROLE_ASSISTANT


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def finished(engine: FakeEngine, within: float = 10.0) -> None:
    if not await asyncio.to_thread(engine.finished.wait, within):
        raise TimeoutError("the engine never finished its generation")


async def test_describe_reports_model_limits_and_defaults(llm_server):
    async with llm_server(max_queue=3, max_tokens=99, temperature=0.3) as s:
        d = await s.stub.Describe(llm_pb2.DescribeRequest())
    assert (d.model_id, d.device, d.context_tokens) == ("fake-llm", "cpu", 4096)
    assert d.default_max_tokens == 99 and d.max_queue == 3
    assert d.default_system_prompt == DEFAULT_SYSTEM_PROMPT
    assert not d.cloud_enabled and d.cloud_model == ""
    assert d.default_sampling.temperature == pytest.approx(0.3)
    assert d.default_sampling.max_tokens == 99


async def test_deltas_stream_in_order_and_done_has_usage(llm_server):
    async with llm_server() as s:
        deltas, done = await collect(s.stub.Chat(chat(user("Manao ahoana"))))
        messages, _ = s.engine.calls[0]
    assert "".join(deltas) == "".join(WORDS)
    assert done.finish_reason == llm_pb2.FINISH_REASON_STOP
    assert done.usage.completion_tokens == len(WORDS)
    assert done.usage.prompt_tokens == s.engine.count_prompt_tokens(messages)
    assert (done.backend, done.model_id, done.trimmed_messages) == ("local", "fake-llm", 0)
    assert done.time_to_first_token_ms > 0 and done.tokens_per_second > 0
    assert messages[0].role is Role.SYSTEM and messages[0].content == DEFAULT_SYSTEM_PROMPT
    assert messages[1].content == "Manao ahoana"


async def test_max_tokens_ends_with_length(llm_server):
    async with llm_server() as s:
        deltas, done = await collect(s.stub.Chat(chat(max_tokens=2)))
    assert "".join(deltas) == "".join(WORDS[:2])
    assert done.finish_reason == llm_pb2.FINISH_REASON_LENGTH
    assert done.usage.completion_tokens == 2


async def test_cancel_after_first_delta_stops_within_one_token_and_frees_the_model(llm_server):
    engine = FakeEngine(gated=True)
    tokens_before = metric("milo_llm_completion_tokens_total", backend="local")
    cancelled_before = metric("milo_llm_replies_total", backend="local", finish_reason="cancelled")
    async with llm_server(engine) as s:
        call = s.stub.Chat(chat())
        engine.permits.release(1)  # exactly one token may be produced
        first = await call.read()
        assert first.delta.text == WORDS[0]
        call.cancel()
        await finished(engine)  # the engine saw the flag while waiting for its second token
        assert engine.finishes[-1].reason is FinishReason.CANCELLED
        assert engine.finishes[-1].completion_tokens == 1
        await wait_until(lambda: s.service.core.queue.active == 0)
        engine.ungate()
        _, done = await asyncio.wait_for(collect(s.stub.Chat(chat())), 10)
        assert done.finish_reason == llm_pb2.FINISH_REASON_STOP
        assert await s.serving()
    tokens = metric("milo_llm_completion_tokens_total", backend="local") - tokens_before
    assert tokens == 1 + len(WORDS)  # the cancelled reply counted its one token
    cancelled = metric("milo_llm_replies_total", backend="local", finish_reason="cancelled")
    assert cancelled - cancelled_before == 1


async def test_deadline_stops_generation(llm_server):
    engine = FakeEngine(gated=True)  # never gets a permit: only the deadline can end it
    async with llm_server(engine) as s:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(s.stub.Chat(chat(), timeout=0.5))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await finished(engine)
        assert engine.finishes[-1].reason is FinishReason.CANCELLED
        assert await s.serving()


async def test_requests_are_served_one_after_the_other_and_the_queue_is_bounded(llm_server):
    engine = FakeEngine(gated=True)
    async with llm_server(engine, max_queue=1) as s:
        first = asyncio.ensure_future(collect(s.stub.Chat(chat(user("un")))))
        await asyncio.to_thread(engine.started.wait, 10)
        second = asyncio.ensure_future(collect(s.stub.Chat(chat(user("deux")))))
        await wait_until(lambda: s.service.core.queue.queued == 1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(s.stub.Chat(chat(user("trois"))))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in err.value.details()
        assert int(dict(err.value.trailing_metadata())["grpc-retry-pushback-ms"]) >= 100
        assert len(engine.calls) == 1  # the second waits; it does not run alongside
        engine.ungate()
        (text1, done1), (text2, done2) = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert [c[0][-1].content for c in engine.calls] == ["un", "deux"]
        assert "".join(text1) == "".join(text2) == "".join(WORDS)
        assert done2.queue_ms > done1.queue_ms
        assert await s.serving()


async def test_over_long_conversation_is_trimmed_not_rejected(llm_server):
    engine = FakeEngine(context_tokens=64)
    turns = []
    for i in range(10):  # 20 messages of 4-5 tokens each, about 100 tokens in all
        turns += [user(f"question numéro {i}"), llm_pb2.Message(role=ASSISTANT, content="ok")]
    async with llm_server(engine) as s:
        request = chat(*turns, user("et la dernière"), max_tokens=8, temperature=0)
        request.messages.insert(0, llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM, content="Bref."))
        _, done = await collect(s.stub.Chat(request))
    sent, _ = engine.calls[0]
    assert done.trimmed_messages > 0 and done.finish_reason == llm_pb2.FINISH_REASON_STOP
    assert len(sent) == 22 - done.trimmed_messages
    assert sent[0].content == "Bref." and sent[1].role is Role.USER
    assert sent[-1].content == "et la dernière"
    assert done.usage.prompt_tokens + 8 <= 64


async def test_message_too_long_for_the_context_is_invalid_argument(llm_server):
    async with llm_server(FakeEngine(context_tokens=64)) as s:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(s.stub.Chat(chat(user("mot " * 80), max_tokens=8)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exceeds the context of 64 tokens" in err.value.details()
        # the cause, for fronts that name it (OpenAI's context_length_exceeded)
        assert ("milo-error-reason", "context_length_exceeded") in tuple(
            err.value.trailing_metadata() or ()
        )
        assert await s.serving()


async def test_conversation_the_chat_template_refuses_is_invalid_argument(llm_server):
    async with llm_server() as s:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(s.stub.Chat(chat(user("a"), user("b"))))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "chat template rejected" in err.value.details()
        assert await s.serving()


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (llm_pb2.ChatRequest(), "messages is empty"),
        (chat(llm_pb2.Message(role=9, content="x")), "role is 9"),  # type: ignore[arg-type]
        (chat(temperature=5.0), "temperature is 5"),
        (chat(top_p=1.5), "top_p is 1.5"),
        (chat(repeat_penalty=3.0), "repeat_penalty is 3"),
        (chat(max_tokens=0), "max_tokens is 0"),
    ],
)
async def test_bad_input_is_invalid_argument_and_service_stays_serving(llm_server, request_, says):
    async with llm_server() as s:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await collect(s.stub.Chat(request_))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in err.value.details()
        assert await s.serving()
        assert not s.engine.calls  # refused before reaching the model
