"""Tier 4: short load tests against each real service (and the gateway over them), each in its
own process on the demo models: the session's demo stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import cli as milo_cli
from services.loadtest.app import run_loadtest
from services.loadtest.args import build_config
from services.loadtest.payloads import FRENCH_SENTENCES, MALAGASY_SENTENCES

sys.path.insert(0, str(Path(__file__).parents[1]))
from stack import DemoStack

ROOT = Path(__file__).resolve().parents[2]
LONG_TEXT = " ".join(
    [
        "Manao ahoana ianao, ry namana malala?",
        "Te hividy vary aho anio.",
        "Aiza ny tsena akaiky indrindra?",
        "Misaotra betsaka tompoko.",
    ]
    * 6
)


@pytest.fixture(scope="module")
def stack(demo_stack: DemoStack) -> DemoStack:
    """The session's demo stack (tests/conftest.py)."""
    return demo_stack


async def loadtest(target: str, address: str, *argv: str) -> dict:
    args = milo_cli.build_parser().parse_args(
        ["loadtest", target, "-a", address, "--warmup", "0", "--timeout", "60", *argv]
    )
    async with asyncio.timeout(120):
        return await run_loadtest(build_config(args, {}))


def assert_counts_add_up(doc: dict, sent: int) -> None:
    assert doc["sent"] == sent == doc["succeeded"] + doc["failed"]
    assert doc["failed"] == 0, doc["errors"]
    assert doc["latency_ms"]["p50"] > 0


@pytest.fixture(scope="module")
def mg_to_fr(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("payloads") / "mg.txt"  # text lines: mg -> fr
    path.write_text("\n".join(MALAGASY_SENTENCES) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("target", "argv"),
    [
        ("translate", ["-n", "8", "-c", "4"]),
        ("llm", ["-n", "4", "-c", "2", "--max-tokens", "16"]),
        ("tts", ["-n", "3", "-c", "2"]),
        ("stt", ["-n", "3", "-c", "3", "--audio-pace", "2"]),
    ],
)
async def test_a_short_run_against_the_service_completes(stack, target, argv, mg_to_fr):
    svc = stack.service(target)
    if target == "translate":  # one direction; both at once: the test below
        argv = [*argv, "--payload", str(mg_to_fr)]
    doc = await loadtest(target, svc.address, *argv, "--server-pid", str(svc.proc.pid))
    assert_counts_add_up(doc, int(argv[1]))
    assert doc["server"].startswith("milo-demo") or "tiny.en" in doc["server"]
    if target != "translate":
        assert doc["first_result_ms"]["p50"] <= doc["latency_ms"]["max"]
    assert doc["cpu"]["server_percent"] > 0


async def test_translate_mixing_both_directions_under_concurrency_never_fails(stack, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    pairs = zip(MALAGASY_SENTENCES, FRENCH_SENTENCES, strict=False)
    mixed.write_text(
        "".join(
            json.dumps({"text": mg, "source": "mg", "target": "fr"})
            + "\n"
            + json.dumps({"text": fr, "source": "fr", "target": "mg"})
            + "\n"
            for mg, fr in pairs
        ),
        encoding="utf-8",
    )
    svc = stack.service("translate")
    doc = await loadtest("translate", svc.address, "-n", "300", "-c", "4", "--payload", str(mixed))
    assert doc["errors"] == {}  # once failed: batches mixing directions broke the vocabulary map


def test_milo_loadtest_against_the_gateway_over_the_demo_stack(stack):
    gateway = stack.service("gateway")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "loadtest",
            "gateway",
            "-a",
            gateway.address,
            "-n",
            "2",
            "-c",
            "2",
            "--warmup",
            "0",
            "--max-tokens",
            "12",
            "--audio-pace",
            "2",
            "--timeout",
            "90",
            "--json",
            "-",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert_counts_add_up(doc, 2)
    assert doc["first_result"] == "first audio" and doc["units_total"] > 0
    assert "first audio after speech" in doc["spans_ms"]
    assert "sent 2   succeeded 2   failed 0" in out.stderr  # the table went to stderr


async def test_an_overloaded_real_service_answers_resource_exhausted(demo_models, tmp_path):
    payload = tmp_path / "long.txt"
    payload.write_text(LONG_TEXT + "\n")
    busy = DemoStack(
        demo_models, {"MILO_TRANSLATE_MAX_CONCURRENCY": "1", "MILO_TRANSLATE_MAX_QUEUE": "0"}
    )
    try:
        svc = busy.service("translate")
        doc = await loadtest(
            "translate", svc.address, "-c", "8", "-n", "24", "--payload", str(payload)
        )
        async with grpc.aio.insecure_channel(svc.address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
    finally:
        busy.stop()
    assert doc["sent"] == 24 == doc["succeeded"] + doc["failed"]
    assert doc["errors"].get("RESOURCE_EXHAUSTED", 0) >= 1, doc["errors"]
    assert doc["succeeded"] >= 1
    assert health.status == health_pb2.HealthCheckResponse.SERVING
