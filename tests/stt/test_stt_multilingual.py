"""Tier 3: the Malagasy path of the STT service on a real multilingual Whisper (whisper-base,
`milo models demo --stt base`), in its own process.

espeak-ng has no Malagasy voice; its Indonesian voice reading Malagasy text is close enough
to exercise the path (the `<|mg|>` token, detection, the streaming finals), not the
accuracy: the tests check that text comes back in the language asked for, not what it says.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.doctor.models import check_stt

sys.path.insert(0, str(Path(__file__).parent))
from procs import ServiceProcess
from stt_support import finals, need_tools, raw, silence, stream, stream_config, to_s16

# Short clips: whisper-base decodes each in about a second on 2 CPU cores.
MALAGASY = "Manao ahoana ianao?"
FRENCH = "Je voudrais du riz."


@pytest.fixture(scope="module")
def multilingual_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.models.demo import build_demo

    root = tmp_path_factory.mktemp("models-mg")
    build_demo(root, components=("stt",), stt="base", echo=lambda _: None)
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    need_tools()
    folder = tmp_path_factory.mktemp("speech-mg")
    out = {}
    for key, voice, text in (("mg", "id", MALAGASY), ("fr", "fr", FRENCH)):
        wav = folder / f"{key}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True
        )
        out[key] = raw(wav, 16_000)
    return out


@pytest.fixture(scope="module")
def service(multilingual_models: Path):
    # whisper-base is unsure of Indonesian-voiced Malagasy (avg log prob about -1.4), which
    # would run all six temperature fallbacks of five samples each (90 s on a busy CPU): the
    # test accepts the first decode, since it checks the language path, not the accuracy.
    env = {
        "MILO_STT_MODEL_DIR": str(multilingual_models / "stt"),
        "MILO_STT_LANGUAGE": "mg",
        "MILO_STT_DEVICE": "cpu",
        "MILO_STT_BEAM_SIZE": "1",
        "MILO_STT_LOG_PROB_THRESHOLD": "-20",
        "MILO_STT_COMPRESSION_RATIO_THRESHOLD": "100",
    }
    with ServiceProcess("services.stt", env=env, prefix="MILO_STT_", startup_timeout=300) as svc:
        yield svc


@pytest.fixture
async def stub(service):
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield stt_pb2_grpc.SttStub(channel)


def pcm(audio: bytes) -> stt_pb2.RecognizeRequest:
    from milo.audio.v1 import audio_pb2

    fmt = audio_pb2.AudioFormat(
        encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16_000, channels=1
    )
    config = stt_pb2.RecognitionConfig(beam_size=1, word_timestamps=False)
    return stt_pb2.RecognizeRequest(config=config, format=fmt, audio=audio)


def test_doctor_sees_the_malagasy_token(multilingual_models: Path) -> None:
    findings = check_stt(multilingual_models / "stt", "mg", load=False)
    assert any(f.level == "ok" and "<|mg|>" in f.message for f in findings)


async def test_describe_is_multilingual_with_malagasy_by_default(stub) -> None:
    info = await stub.Describe(stt_pb2.DescribeRequest())
    assert info.multilingual and "mg" in info.languages and info.default_language == "mg"


async def test_recognize_in_malagasy_returns_text_and_mg(stub, clips) -> None:
    request = pcm(clips["mg"])
    request.config.language = "mg"
    reply = await stub.Recognize(request)
    assert reply.text.strip() and reply.language == "mg"


async def test_recognize_with_detection_says_which_language(stub, clips) -> None:
    request = pcm(clips["fr"])
    request.config.language = "auto"
    reply = await stub.Recognize(request)
    assert reply.text.strip() and reply.language == "fr", (reply.language, reply.text)


async def test_french_for_the_french_pivot_mode(stub, clips) -> None:
    request = pcm(clips["fr"])
    request.config.language = "fr"
    reply = await stub.Recognize(request)
    assert reply.language == "fr" and reply.text.lower().startswith("je"), reply.text


async def test_streaming_final_in_malagasy(stub, clips) -> None:
    audio = to_s16(silence(0.3)) + clips["mg"] + to_s16(silence(1.0))
    results = finals(await stream(stub, stream_config(), audio, 3200))
    assert results and all(r.language == "mg" for r in results)
    assert " ".join(r.text for r in results).strip()
