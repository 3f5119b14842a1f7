"""Tier 2: OpenAI compatibility of the HTTP bridge (speech formats, voices, speed,
subtitles, chat content and limits, slow bodies), over fake services on real servers."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import av
import pytest
from conftest import start_gateway, stop_gateway
from test_http_routes import wav_bytes

from gateway.http.voices import pick

sys.path.insert(0, str(Path(__file__).parent))

WORDS = " ".join(["teny"] * 20)  # the fake TTS: 100 ms a word -> 2.0 s of speech


def decoded_seconds(data: bytes) -> tuple[float, str]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return samples / stream.rate, stream.codec_context.name


@pytest.mark.parametrize(
    ("fmt", "media_type", "codec"),
    [
        ("mp3", "audio/mpeg", "mp3"),
        ("opus", "audio/ogg", "opus"),
        ("aac", "audio/aac", "aac"),
        ("flac", "audio/flac", "flac"),
        ("wav", "audio/wav", "pcm_s16le"),
    ],
)
async def test_every_speech_format_streams_and_decodes_to_the_right_duration(
    gateway_http, fmt, media_type, codec
):
    r = await gateway_http.client.post(
        "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": WORDS, "response_format": fmt},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    seconds, found = decoded_seconds(r.content)
    assert found.startswith(codec) and seconds == pytest.approx(2.0, abs=0.1)


async def test_mp3_is_the_default_and_pcm_is_raw_24khz(gateway_http):
    r = await gateway_http.client.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "default", "input": WORDS}
    )
    assert r.headers["content-type"] == "audio/mpeg"
    assert decoded_seconds(r.content)[1].startswith("mp3")
    r = await gateway_http.client.post(
        "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "teny", "response_format": "pcm"},
    )
    assert r.headers["content-type"].startswith("audio/L16")
    assert gateway_http.fakes.tts.requests[-1].sample_rate_hz == 24000


def test_openai_voice_names_go_round_the_model_voices():
    voices = ["v1", "v2", "v3"]
    assert [pick(n, voices) for n in ("alloy", "ash", "ballad", "coral", "Echo")] == [
        "v1",
        "v2",
        "v3",
        "v1",
        "v2",
    ]
    assert pick("default", voices) is None and pick("DEFAULT", []) is None
    assert pick("cedar", ["only"]) == "only" and pick("alloy", []) is None
    assert pick("mlg_soa", voices) == "mlg_soa"  # a model voice is passed as it is


@pytest.mark.parametrize(
    ("voice", "sent"),
    [
        ("alloy", "mlg_rakoto"),
        ("ash", "mlg_soa"),
        ("ballad", "mlg_rakoto"),
        ("default", None),
        ("nova", "mlg_rakoto"),
        ("mlg_soa", "mlg_soa"),
    ],
)
async def test_any_openai_voice_and_default_are_accepted(gateway_http, voice, sent):
    r = await gateway_http.client.post(
        "/v1/audio/speech",
        json={"model": "tts-1", "voice": voice, "input": "teny", "response_format": "wav"},
    )
    assert r.status_code == 200, r.text
    request = gateway_http.fakes.tts.requests[-1]
    assert (request.voice if request.HasField("voice") else None) == sent


@pytest.mark.parametrize(("speed", "sent"), [(0.25, 0.5), (0.5, 0.5), (1.3, 1.3), (4.0, 2.0)])
async def test_openai_speed_range_is_accepted_and_clamped(gateway_http, speed, sent):
    r = await gateway_http.client.post(
        "/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": "alloy",
            "input": "teny",
            "speed": speed,
            "response_format": "wav",
        },
    )
    assert r.status_code == 200, r.text
    assert gateway_http.fakes.tts.requests[-1].speed == pytest.approx(sent)
    r = await gateway_http.client.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "teny", "speed": 4.5}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "speed"


async def test_transcriptions_as_srt_and_vtt(gateway_http):
    files = {"file": ("a.wav", wav_bytes(), "audio/wav")}
    srt = await gateway_http.client.post(
        "/v1/audio/transcriptions",
        files=files,
        data={"model": "whisper-1", "response_format": "srt"},
    )
    assert srt.status_code == 200, srt.text
    assert srt.text == "1\n00:00:00,000 --> 00:00:00,900\nhello there\n\n"
    vtt = await gateway_http.client.post(
        "/v1/audio/transcriptions",
        files=files,
        data={"model": "whisper-1", "response_format": "vtt"},
    )
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text == "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nhello there\n\n"


async def test_an_image_part_is_a_400_saying_images_are_not_supported(gateway_http):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    r = await gateway_http.client.post(
        "/v1/chat/completions",
        json={"model": "milo", "messages": [{"role": "user", "content": content}]},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "images are not supported" in error["message"] and "str" not in error["message"]


async def test_many_messages_are_passed_on_for_the_llm_to_trim(gateway_http):
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": f"message {i}"} for i in range(301)
    ]
    r = await gateway_http.client.post(
        "/v1/chat/completions", json={"model": "milo", "messages": messages, "max_tokens": 8}
    )
    assert r.status_code == 200, r.text
    assert len(gateway_http.fakes.llm.requests[-1].messages) == 301


@pytest.mark.parametrize("length", [5_000, 20_000])
async def test_a_message_longer_than_the_context_is_context_length_exceeded(gateway_http, length):
    r = await gateway_http.client.post(
        "/v1/chat/completions",
        json={"model": "milo", "messages": [{"role": "user", "content": "a " * (length // 2)}]},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")


async def test_a_body_shorter_than_its_length_gets_408_and_frees_the_worker():
    gateway = await start_gateway(body_read_timeout_s=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.service.http_port)
        body = json.dumps({"model": "milo", "messages": []}).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408")
        assert await asyncio.wait_for(reader.read(), 10)  # the JSON error, then closed
        writer.close()
        ok = await gateway.client.get("/v1/models")
        assert ok.status_code == 200
    finally:
        await stop_gateway(gateway)
