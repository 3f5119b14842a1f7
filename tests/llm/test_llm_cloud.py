"""Tier 2: the cloud boost, the real httpx client against a local server speaking the
Anthropic Messages streaming protocol, with the fake engine as the local model."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from milo.llm.v1 import llm_pb2

sys.path.insert(0, str(Path(__file__).parent))
from llm_fakes import WORDS, FakeAnthropic, chat, collect, free_port, user


@pytest.fixture
async def cloud():
    servers: list[FakeAnthropic] = []

    async def start(mode: str) -> FakeAnthropic:
        servers.append(await FakeAnthropic(mode).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


def cloud_settings(base_url: str, budget_ms: int = 2000) -> dict[str, object]:
    return {
        "cloud_api_key": "sk-test-key",
        "cloud_model": "claude-haiku-test",
        "cloud_base_url": base_url,
        "cloud_first_token_ms": budget_ms,
    }


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("milo_llm_cloud_fallbacks_total", {"reason": reason}) or 0


async def test_answer_streams_from_the_cloud_model(llm_server, cloud):
    server = await cloud("ok")
    async with llm_server(**cloud_settings(server.base_url)) as s:
        described = await s.stub.Describe(llm_pb2.DescribeRequest())
        deltas, done = await collect(s.stub.Chat(chat(user("Salama"), max_tokens=50)))
    assert described.cloud_enabled and described.cloud_model == "claude-haiku-test"
    assert deltas == list(server.pieces)
    assert (done.backend, done.model_id) == ("cloud", "claude-haiku-test")
    assert done.finish_reason == llm_pb2.FINISH_REASON_STOP
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (21, 3)
    assert done.time_to_first_token_ms > 0
    assert not s.engine.calls  # the local model was not used
    (received,) = server.received
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "sk-test-key"
    assert received.headers["anthropic-version"] == "2023-06-01"
    body = received.body
    assert (body["model"], body["stream"], body["max_tokens"]) == ("claude-haiku-test", True, 50)
    assert body["messages"] == [{"role": "user", "content": "Salama"}]
    assert body["system"].startswith("Tu es Milo")


@pytest.mark.parametrize(("mode", "reason"), [("error", "error"), ("hang", "timeout")])
async def test_falls_back_to_local_when_the_cloud_errors_or_hangs(llm_server, cloud, mode, reason):
    server = await cloud(mode)
    before = fallbacks(reason)
    async with llm_server(**cloud_settings(server.base_url, budget_ms=300)) as s:
        deltas, done = await collect(s.stub.Chat(chat()))
    assert len(server.received) == 1  # the cloud was asked first
    assert "".join(deltas) == "".join(WORDS) and done.backend == "local"
    assert done.model_id == "fake-llm"
    assert fallbacks(reason) == before + 1
    if mode == "hang":
        assert done.time_to_first_token_ms >= 300  # waited out the budget, no longer needed


async def test_falls_back_to_local_when_the_cloud_is_unreachable(llm_server):
    before = fallbacks("unreachable")
    async with llm_server(**cloud_settings(f"http://127.0.0.1:{free_port()}")) as s:
        deltas, done = await collect(s.stub.Chat(chat()))
    assert "".join(deltas) == "".join(WORDS) and done.backend == "local"
    assert fallbacks("unreachable") == before + 1


async def test_allow_cloud_false_keeps_the_reply_local(llm_server, cloud):
    server = await cloud("ok")
    async with llm_server(**cloud_settings(server.base_url)) as s:
        _, done = await collect(s.stub.Chat(chat(allow_cloud=False)))
    assert done.backend == "local" and not server.received


async def test_cloud_failure_after_text_was_sent_is_unavailable(llm_server, cloud):
    server = await cloud("fail_mid")
    async with llm_server(**cloud_settings(server.base_url)) as s:
        deltas = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for reply in s.stub.Chat(chat()):
                deltas.append(reply.delta.text)
        assert deltas == [server.pieces[0]]  # what was sent stays sent
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "mid-reply" in err.value.details() and "Internal server error" in err.value.details()
        assert not s.engine.calls
        assert await s.serving()
