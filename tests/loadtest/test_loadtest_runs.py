"""Tier 2: the load tester against fake servicers hosted by the real runtime on port 0."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import cli as milo_cli
from services.loadtest.app import Config, run_loadtest
from services.loadtest.args import build_config
from services.loadtest.runner import Limits

sys.path.insert(0, str(Path(__file__).parent))
from loadtest_fakes import start_fake, write_wav

STREAMS = {
    "stt": "first transcript",
    "llm": "first token",
    "tts": "first audio chunk",
    "gateway": "first audio",
}


def config(target: str, address: str, *argv: str) -> Config:
    args = milo_cli.build_parser().parse_args(["loadtest", target, "-a", address, *argv])
    return build_config(args, {})


async def run(cfg: Config, within: float = 30.0) -> dict:
    async with asyncio.timeout(within):  # the tool must never hang
        return await run_loadtest(cfg)


@pytest.fixture
async def fake(request):
    name, *limits = request.param
    host, servicer = await start_fake(name, *limits)
    yield f"127.0.0.1:{host.port}", servicer
    await host.stop(grace=0)


def speech_args(tmp_path: Path) -> list[str]:
    wav = write_wav(tmp_path / "clip.wav", seconds=0.3, rate=22050)
    return ["--payload", str(wav), "--audio-pace", "0", "--tail-silence-ms", "100"]


@pytest.mark.parametrize(
    "fake",
    [("stt",), ("translate",), ("llm",), ("tts",), ("gateway",)],
    indirect=True,
    ids=lambda p: p[0],
)
async def test_a_short_run_of_each_target_completes_and_its_counts_add_up(fake, tmp_path):
    address, servicer = fake
    target = type(servicer).__name__.removeprefix("Fake").lower()
    extra = speech_args(tmp_path) if target in ("stt", "gateway") else []
    doc = await run(config(target, address, "-n", "6", "-c", "3", "--warmup", "0", *extra))
    assert doc["sent"] == 6 == doc["succeeded"] + doc["failed"]
    assert doc["failed"] == 0, doc["errors"]
    assert servicer.calls == 6
    assert doc["stopped_by"] == "request count"
    assert doc["latency_ms"]["p50"] > 0 and doc["throughput_rps"] > 0
    assert doc["units_total"] > 0
    if target in STREAMS:
        assert doc["first_result"] == STREAMS[target]
        assert 0 < doc["first_result_ms"]["p50"] <= doc["latency_ms"]["max"]
    else:
        assert doc["first_result_ms"] is None


@pytest.mark.parametrize("fake", [("translate",)], indirect=True)
async def test_warm_up_requests_are_sent_but_not_counted(fake):
    address, servicer = fake
    doc = await run(config("translate", address, "-n", "5", "--warmup", "0.3"))
    assert doc["warmup_sent"] >= 1
    assert servicer.calls == doc["sent"] + doc["warmup_sent"]
    assert doc["sent"] == 5


@pytest.mark.parametrize("fake", [("translate", 1, 0)], indirect=True)
async def test_an_overloaded_service_shows_resource_exhausted_instead_of_hanging(fake):
    address, servicer = fake
    servicer.hold = True  # the one admitted call holds its slot until its deadline
    doc = await run(
        config("translate", address, "-c", "8", "-n", "20", "--warmup", "0", "--timeout", "1")
    )
    assert doc["sent"] == 20 == doc["succeeded"] + doc["failed"]
    assert doc["errors"]["RESOURCE_EXHAUSTED"] >= 1
    assert "busy" in doc["error_samples"]["RESOURCE_EXHAUSTED"]
    assert doc["errors"].get("DEADLINE_EXCEEDED", 0) >= 1  # the held call
    async with grpc.aio.insecure_channel(address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("fake", [("translate", 1, 0)], indirect=True)
async def test_a_refused_worker_waits_the_servers_retry_hint_before_trying_again(fake):
    address, servicer = fake
    servicer.hold = True
    doc = await run(
        config("translate", address, "-c", "8", "-d", "1", "--warmup", "0", "--timeout", "1")
    )
    # The runtime's hint is at least 100 ms: each worker starts at most 11 requests in 1 s
    # (a hot loop sends thousands).
    assert 1 <= doc["errors"]["RESOURCE_EXHAUSTED"] <= 8 * 11
    assert doc["sent"] == doc["succeeded"] + doc["failed"]


@pytest.mark.parametrize("fake", [("llm",)], indirect=True)
async def test_the_max_duration_cap_cancels_calls_in_flight_and_counts_them(fake):
    address, servicer = fake
    servicer.hold = True
    cfg = config("llm", address, "-c", "2", "-d", "60", "--warmup", "0", "--timeout", "60")
    cfg = Config(**{**cfg.__dict__, "limits": Limits(max_requests=100, max_duration_s=0.5)})
    doc = await run(cfg, within=10)
    assert doc["stopped_by"] == "the max-duration cap"
    assert doc["sent"] == 2 == doc["failed"]
    assert doc["errors"] == {"CANCELLED": 2}


@pytest.mark.parametrize("fake", [("tts",)], indirect=True)
async def test_the_max_requests_cap_stops_the_run(fake):
    address, servicer = fake
    doc = await run(
        config("tts", address, "-c", "2", "-d", "60", "--warmup", "0", "--max-requests", "7")
    )
    assert doc["stopped_by"] == "the max-requests cap"
    assert doc["sent"] == 7 == servicer.calls


@pytest.mark.parametrize("fake", [("tts",)], indirect=True)
async def test_open_loop_keeps_arriving_and_skips_past_max_in_flight(fake):
    address, servicer = fake
    servicer.hold = True
    doc = await run(
        config(
            "tts",
            address,
            "--rate",
            "50",
            "--arrivals",
            "uniform",
            "-d",
            "0.5",
            "--warmup",
            "0",
            "--timeout",
            "0.3",
            "--max-in-flight",
            "3",
        )
    )
    assert doc["skipped"] > 0
    assert doc["sent"] >= 3 and doc["sent"] == doc["failed"]
    assert set(doc["errors"]) == {"DEADLINE_EXCEEDED"}


@pytest.mark.parametrize("fake", [("gateway",)], indirect=True)
async def test_a_gateway_turn_error_is_counted_under_its_status_code(fake):
    address, servicer = fake
    servicer.error = "RESOURCE_EXHAUSTED"
    doc = await run(config("gateway", address, "-n", "3", "--warmup", "0", "--text-input"))
    assert doc["errors"] == {"RESOURCE_EXHAUSTED": 3}
    assert doc["error_samples"]["RESOURCE_EXHAUSTED"] == "STAGE_LLM: llm is busy"


@pytest.mark.parametrize("fake", [("stt",)], indirect=True)
async def test_stt_speech_is_resampled_and_unary_mode_works(fake, tmp_path):
    address, servicer = fake
    doc = await run(config("stt", address, "-n", "2", "--warmup", "0", *speech_args(tmp_path)))
    assert {f.sample_rate_hz for f in servicer.formats} == {16000}
    assert doc["spans_ms"]["final after speech"]["max"] >= 0
    unary = await run(
        config("stt", address, "-n", "2", "--warmup", "0", "--unary", *speech_args(tmp_path))
    )
    assert unary["succeeded"] == 2 and unary["first_result_ms"] is None


@pytest.mark.parametrize("fake", [("translate",)], indirect=True)
async def test_the_ramp_finds_the_highest_rate_meeting_the_objective(fake):
    address, _ = fake
    doc = await run(
        config(
            "translate",
            address,
            "--ramp",
            "--slo",
            "p99<2s",
            "--ramp-start",
            "4",
            "--ramp-max-rate",
            "16",
            "--step-duration",
            "0.5",
            "--warmup",
            "0",
        )
    )
    ramp = doc["ramp"]
    assert [s["rate"] for s in ramp["steps"]] == [4, 8, 16]
    assert ramp["best_rate"] == 16 and all(s["passed"] for s in ramp["steps"])
    assert doc["shape"]["rate"] == 16


@pytest.mark.parametrize("fake", [("translate",)], indirect=True)
async def test_the_command_writes_json_and_compares_with_an_earlier_run(fake, tmp_path, capsys):
    address, _ = fake
    first = tmp_path / "first.json"
    argv = ["loadtest", "translate", "-a", address, "-n", "10", "--warmup", "0", "-q"]
    assert await asyncio.to_thread(milo_cli.main, [*argv, "--json", str(first)]) == 0
    out = capsys.readouterr().out
    assert "sent 10   succeeded 10   failed 0" in out and "errors: none" in out
    old = json.loads(first.read_text())
    old.update(throughput_rps=1.0, errors={"UNAVAILABLE": 5}, failed=5, sent=15)
    old["latency_ms"]["p99"] = 5000.0
    (tmp_path / "old.json").write_text(json.dumps(old))
    second = tmp_path / "second.json"
    assert (
        await asyncio.to_thread(
            milo_cli.main, [*argv, "--compare", str(tmp_path / "old.json"), "--json", str(second)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "compared with" in out and "errors UNAVAILABLE" in out
    new = json.loads(second.read_text())
    rows = {r["metric"]: r for r in new["comparison"]["figures"]}
    assert rows["throughput (req/s)"]["change"] == pytest.approx(new["throughput_rps"] - 1.0)
    assert rows["throughput (req/s)"]["verdict"] == "better"
    assert rows["latency p99 (ms)"]["new"] == new["latency_ms"]["p99"]
    assert rows["latency p99 (ms)"]["verdict"] == "better"
    assert rows["error rate (%)"]["old"] == pytest.approx(100 * 5 / 15)
    assert rows["errors UNAVAILABLE"]["change"] == -5


async def test_an_unreachable_address_fails_fast_with_a_message(capsys, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = await asyncio.to_thread(milo_cli.main, ["loadtest", "tts", "-a", f"127.0.0.1:{port}"])
    assert rc == 1
    assert "did not answer Describe: UNAVAILABLE" in capsys.readouterr().err


@pytest.mark.parametrize("fake", [("llm",)], indirect=True)
async def test_a_bad_payload_file_is_a_usage_error(fake, tmp_path, capsys):
    address, servicer = fake
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "robot", "content": "hi"}]}\n')
    rc = await asyncio.to_thread(
        milo_cli.main, ["loadtest", "llm", "-a", address, "--payload", str(bad)]
    )
    assert rc == 2
    assert "each message needs a role" in capsys.readouterr().err
    assert servicer.calls == 0


@pytest.mark.parametrize("fake", [("stt",)], indirect=True)
async def test_reflection_resolves_a_method_name_as_ghz_asks(fake):
    """ghz --call pkg.Service.Method (no --proto) asks reflection for the method's file."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    address, _ = fake

    async def lookup(symbol: str) -> reflection_pb2.ServerReflectionResponse:
        async with grpc.aio.insecure_channel(address) as channel:
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
            reply = await call.read()
            await call.done_writing()
            return reply

    found = await lookup("milo.stt.v1.Stt.StreamingRecognize")
    assert len(found.file_descriptor_response.file_descriptor_proto) == 2  # stt + audio
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    for missing in ("milo.stt.v1.Stt.Nope", "milo.stt.v1.Nope.Recognize"):
        assert (await lookup(missing)).error_response.error_code == not_found
