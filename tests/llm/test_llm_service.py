"""Tier 3: `python -m services.llm` in its own process with the demo GGUF, called over gRPC.

The process has the cloud model configured at an address where nothing listens, so a
request that allows the cloud shows the fallback; the other tests turn the cloud off per
request (allow_cloud=false).
"""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.llm.v1 import llm_pb2, llm_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))
from llm_fakes import free_port, user
from procs import ServiceProcess

CONTEXT = 4096


@pytest.fixture(scope="module")
def service(demo_gguf: Path):
    env = {
        "MILO_LLM_MODEL_PATH": str(demo_gguf),
        "MILO_LLM_CONTEXT_TOKENS": str(CONTEXT),
        "MILO_LLM_THREADS": "2",
        "MILO_LLM_CLOUD_API_KEY": "sk-test",
        "MILO_LLM_CLOUD_MODEL": "claude-test",
        "MILO_LLM_CLOUD_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    with ServiceProcess("services.llm", env, prefix="MILO_LLM_") as proc:
        yield proc


@pytest.fixture(scope="module")
def stub(service):
    with grpc.insecure_channel(service.address) as channel:
        yield llm_pb2_grpc.LlmStub(channel)


def request(
    *messages: llm_pb2.Message, allow_cloud: bool = False, **sampling
) -> llm_pb2.ChatRequest:
    return llm_pb2.ChatRequest(
        messages=messages or [user("Manao ahoana?")],
        sampling=llm_pb2.SamplingOptions(**sampling),
        allow_cloud=allow_cloud,
    )


def complete(stub, req: llm_pb2.ChatRequest) -> tuple[list[str], llm_pb2.ChatDone, float]:
    """Deltas, ChatDone, and when (time.monotonic) the first delta arrived."""
    deltas, done, first = [], None, 0.0
    for reply in stub.Chat(req, timeout=60):
        assert done is None
        if reply.HasField("delta"):
            first = first or time.monotonic()
            deltas.append(reply.delta.text)
        else:
            done = reply.done
    assert done is not None
    return deltas, done, first


def metric(service: ServiceProcess, name: str, **labels: str) -> float:
    port = re.search(r"metrics on http://[^:]+:(\d+)/metrics", service.log()).group(1)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}{{{re.escape(want)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def serving(service: ServiceProcess) -> bool:
    with grpc.insecure_channel(service.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="milo.llm.v1.Llm"), timeout=10
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_describe(stub):
    d = stub.Describe(llm_pb2.DescribeRequest(), timeout=10)
    assert d.model_id == "milo-demo-llama" and d.device == "cpu"
    assert d.context_tokens == CONTEXT and d.cloud_enabled and d.cloud_model == "claude-test"


def test_deltas_concatenate_to_the_reply_and_usage_is_consistent(stub):
    deltas, done, _ = complete(stub, request(max_tokens=40, temperature=0))
    assert len(deltas) > 1 and all(deltas)
    assert done.finish_reason == llm_pb2.FINISH_REASON_LENGTH  # the demo model rarely stops
    assert done.usage.completion_tokens == 40 and done.usage.prompt_tokens > 100
    assert (done.backend, done.model_id) == ("local", "milo-demo-llama")
    again, done2, _ = complete(stub, request(max_tokens=40, temperature=0))
    assert "".join(again) == "".join(deltas)  # greedy: the same reply, however it was cut
    assert done2.usage == done.usage


def test_stop_string_ends_the_reply_before_it(stub):
    deltas, _, _ = complete(stub, request(max_tokens=40, temperature=0))
    full = "".join(deltas)
    stop = full[len(full) // 2 :][:3]
    cut, done, _ = complete(stub, request(max_tokens=40, temperature=0, stop=[stop]))
    assert "".join(cut) == full[: full.index(stop)]
    assert done.finish_reason == llm_pb2.FINISH_REASON_STOP
    assert done.usage.completion_tokens < 40


def test_cancel_after_first_delta_stops_generation_and_next_request_is_served_at_once(
    service, stub
):
    tokens = metric(service, "milo_llm_completion_tokens_total", backend="local")
    cancelled = metric(
        service, "milo_llm_replies_total", backend="local", finish_reason="cancelled"
    )
    call = stub.Chat(request(max_tokens=3800), timeout=60)
    assert next(call).HasField("delta")
    call.cancel()
    deadline = time.monotonic() + 20
    while (
        metric(service, "milo_llm_replies_total", backend="local", finish_reason="cancelled")
        == cancelled
    ):
        assert time.monotonic() < deadline, "the cancelled reply never ended"
        time.sleep(0.02)
    generated = metric(service, "milo_llm_completion_tokens_total", backend="local") - tokens
    assert generated < 500  # of 3800 allowed: it stopped, it did not run on
    _, done, _ = complete(stub, request(max_tokens=4))
    assert done.queue_ms < 100 and done.finish_reason == llm_pb2.FINISH_REASON_LENGTH


def test_a_request_arriving_mid_reply_is_served_alongside_it(stub):
    """Continuous batching: a second request is answered while a long reply goes on."""
    long_reply = stub.Chat(request(user("Salama"), max_tokens=3000), timeout=60)
    assert next(long_reply).HasField("delta")
    _, done, _ = complete(stub, request(user("Bonjour"), max_tokens=8))
    assert done.usage.completion_tokens == 8 and done.queue_ms < 100
    assert long_reply.running()  # still generating: it did not hold the other back
    long_reply.cancel()


def test_over_long_conversation_is_trimmed_not_rejected(stub):
    system = llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM, content="Valio fohifohy.")
    turns = []
    for i in range(20):  # about 500 tokens; with max_tokens 3900 only about 190 fit
        turns += [
            user(f"Fanontaniana {i}: inona no vaovao any Antananarivo?"),
            llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content="Tsy misy, misaotra."),
        ]
    # Stop strings that nearly every word piece contains end the reply at once.
    req = request(
        system,
        *turns,
        user("Veloma!"),
        max_tokens=3900,
        temperature=0,
        stop=[" ", "a", "e", "i", "o", "u", "y", "n", "r", "t"],
    )
    _, done, _ = complete(stub, req)
    budget = CONTEXT - 3900
    assert done.trimmed_messages > 20 and done.trimmed_messages % 2 == 0
    assert budget - 60 < done.usage.prompt_tokens <= budget  # only what had to go was dropped
    assert done.finish_reason == llm_pb2.FINISH_REASON_STOP


def test_cloud_unreachable_falls_back_to_the_local_model(service, stub):
    before = metric(service, "milo_llm_cloud_fallbacks_total", reason="unreachable")
    deltas, done, _ = complete(stub, request(max_tokens=8, allow_cloud=True))
    assert deltas and done.backend == "local"
    assert metric(service, "milo_llm_cloud_fallbacks_total", reason="unreachable") == before + 1


@pytest.mark.parametrize(
    ("req", "says"),
    [
        (llm_pb2.ChatRequest(), "messages is empty"),
        (request(llm_pb2.Message(role=5, content="x")), "role is 5"),
        (request(temperature=-1), "temperature is -1"),
        (request(max_tokens=CONTEXT), "max_tokens is 4096"),
        (request(user("teny " * 5000), max_tokens=16), "exceeds the context"),
    ],
)
def test_bad_input_is_invalid_argument_and_the_service_stays_serving(service, stub, req, says):
    with pytest.raises(grpc.RpcError) as err:
        complete(stub, req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in err.value.details()
    assert serving(service)
