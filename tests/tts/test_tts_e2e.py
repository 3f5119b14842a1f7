"""Tier 3: the TTS service end to end in its own process, with the demo random-weight VITS
(transformers VitsModel + VitsTokenizer, MMS-style Malagasy vocabulary)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.tts.v1 import tts_pb2, tts_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from procs import ServiceProcess

PARAGRAPH = (
    "Manao ahoana tompoko! Androany dia ny 26/06/2024, amin'ny 14:30. "
    "Ny vidin'ny vary dia 2 500 Ar isaky ny kilao. Misaotra betsaka."
)


@pytest.fixture(scope="module")
def stub(demo_models: Path) -> Iterator[tts_pb2_grpc.TtsStub]:
    env = {"MILO_TTS_MODEL_DIR": str(demo_models / "tts"), "MILO_TTS_THREADS": "1"}
    with (
        ServiceProcess("services.tts", env, prefix="MILO_TTS_") as svc,
        grpc.insecure_channel(svc.address) as channel,
    ):
        stub = tts_pb2_grpc.TtsStub(channel)
        stub.channel = channel  # type: ignore[attr-defined]
        yield stub
        assert svc.stop() == 0  # SIGTERM: drained and exited cleanly


def synthesize(stub: tts_pb2_grpc.TtsStub, **kw: object) -> list[tts_pb2.SynthesizeResponse]:
    return list(stub.Synthesize(tts_pb2.SynthesizeRequest(**kw), timeout=120))


def audio(replies: list[tts_pb2.SynthesizeResponse]) -> bytes:
    return b"".join(r.audio.data for r in replies if r.HasField("audio"))


def test_describe_reports_the_demo_voice(stub) -> None:
    reply = stub.Describe(tts_pb2.DescribeRequest())
    assert reply.model_id == "milo-demo/vits-tiny-random-mlg"
    assert [(v.name, v.native_sample_rate_hz) for v in reply.voices] == [("mlg", 16000)]
    assert reply.device.startswith("cpu")


def test_paragraph_streams_sentences_and_bounded_chunks_at_the_requested_rate(stub) -> None:
    replies = synthesize(stub, text=PARAGRAPH, sample_rate_hz=24000)
    assert replies[0].format.sample_rate_hz == 24000
    sentences = [r.sentence for r in replies if r.HasField("sentence")]
    assert [s.sentence_index for s in sentences] == [0, 1, 2, 3]
    assert sentences[1].normalized_text == (
        "androany dia ny enina amby roapolo jona efatra amby roapolo sy roa arivo "
        "amin'ny efatra ambin'ny folo ora sy telopolo minitra"
    )
    assert "dimanjato sy roa arivo ariary" in sentences[2].normalized_text
    chunks = [r.audio for r in replies if r.HasField("audio")]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(0 < c.duration_ms <= 200 for c in chunks)
    done = replies[-1].done
    assert len(audio(replies)) // 2 == pytest.approx(done.audio_duration_ms * 24, abs=2)
    assert done.sentences == 4 and done.dropped_characters == 0


def test_duration_grows_with_text_length(stub) -> None:
    durations = [
        synthesize(stub, text=text, seed=1)[-1].done.audio_duration_ms
        for text in ("Manao ahoana.", "Manao ahoana. Misaotra betsaka tompoko.", PARAGRAPH)
    ]
    assert durations[0] < durations[1] < durations[2]


def test_same_seed_gives_identical_audio(stub) -> None:
    first = audio(synthesize(stub, text=PARAGRAPH, seed=42))
    again = audio(synthesize(stub, text=PARAGRAPH, seed=42))
    other = audio(synthesize(stub, text=PARAGRAPH, seed=43))
    assert first == again
    assert first != other


def test_speed_shortens_the_audio(stub) -> None:
    normal = synthesize(stub, text=PARAGRAPH, seed=3)[-1].done.audio_duration_ms
    fast = synthesize(stub, text=PARAGRAPH, seed=3, speed=2.0)[-1].done.audio_duration_ms
    # random weights predict about one frame per symbol, so rounding up to whole frames
    # keeps speed 2 well above half the length; a real voice comes close to half
    assert fast < normal * 0.9


def test_5000_characters_work(stub) -> None:
    text = (PARAGRAPH + " ") * 40
    assert len(text) >= 5000
    replies = synthesize(stub, text=text, speed=2.0)
    done = replies[-1].done
    assert done.sentences == 4 * 40
    chunks = [r.audio for r in replies if r.HasField("audio")]
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (dict(text=""), "text is empty"),
        (dict(text="🙂🙂 中文"), "nothing to say"),
        (dict(text="Manao", voice="nobody"), "unknown voice"),
        (dict(text="Manao", sample_rate_hz=11025), "not supported"),
        (dict(text="a" * 10_001), "the limit is 10000"),
    ],
)
def test_bad_input_is_invalid_argument_and_service_stays_serving(stub, kw, expected) -> None:
    with pytest.raises(grpc.RpcError) as err:
        synthesize(stub, **kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.value.details()
    health = health_pb2_grpc.HealthStub(stub.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="milo.tts.v1.Tts")).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_cli_help_lists_the_tts_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.tts", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in (
        "--model-dir",
        "--device",
        "--speaking-rate",
        "--noise-scale",
        "--seed",
        "--max-chunk-ms",
    ):
        assert flag in out
