"""Tier 2: the HTTP bridge in the gateway's process, over fake services on real servers."""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
import wave

import grpc
import pytest
from conftest import start_gateway, stop_gateway
from http_fakes import HttpFakes

from services.runtime.interceptors import RETRY_PUSHBACK_KEY


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return out.getvalue()


async def test_healthz_and_readyz_follow_the_services(gateway_http):
    client, fakes = gateway_http.client, gateway_http.fakes
    assert isinstance(fakes, HttpFakes)
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (ready := await client.get("/readyz")).status_code != 200:  # watchers catch up
        assert loop.time() < deadline, ready.json()
        await asyncio.sleep(0.05)
    assert ready.json()["ready"] is True
    await fakes.servers["tts"].stop(0)
    while (ready := await client.get("/readyz")).status_code == 200:
        assert loop.time() < deadline + 10, "readyz still 200 with tts down"
        await asyncio.sleep(0.05)
    body = ready.json()
    assert ready.status_code == 503
    assert body["ready"] is False and body["not_ready"] == ["tts"]
    assert "tts is" in body["error"]["message"]
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_transcribe_returns_text_segments_and_words(gateway_http):
    reply = await gateway_http.client.post(
        "/v1/transcribe",
        files={"file": ("a.wav", wav_bytes(), "audio/wav")},
        data={"language": "en"},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["text"] == "hello there" and body["language"] == "en"
    assert [w["word"] for w in body["segments"][0]["words"]] == [" hello", " there"]
    sent = gateway_http.fakes.stt.requests[-1]
    assert sent.config.language == "en" and sent.audio.startswith(b"RIFF")


async def test_translate_passes_text_and_languages(gateway_http):
    reply = await gateway_http.client.post(
        "/v1/translate", json={"text": "Salama", "source": "mg", "target": "fr"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["text"] == "[fr] Salama"
    assert gateway_http.fakes.translate.calls[-1] == ("Salama", "mg", "fr")


async def test_chat_streams_server_sent_events(gateway_http):
    async with gateway_http.client.stream(
        "POST", "/v1/chat", json={"messages": [{"role": "user", "content": "Salut"}]}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line async for line in r.aiter_lines() if line]
    kinds = [e.removeprefix("event: ") for e in events if e.startswith("event: ")]
    assert kinds[-1] == "done"
    assert kinds.count("delta") == len(gateway_http.fakes.llm.reply.split())
    data = [json.loads(e.removeprefix("data: ")) for e in events if e.startswith("data: ")]
    assert "".join(d.get("text", "") for d in data[:-1]).strip() == gateway_http.fakes.llm.reply
    assert data[-1]["finish_reason"] == "stop"


async def test_speak_streams_a_wav_file(gateway_http):
    reply = await gateway_http.client.post("/v1/speak", json={"text": "Manao ahoana"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "audio/wav"
    data = reply.content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 4 * 1600  # header + 2 words x 2 chunks x 800 samples
    assert reply.headers["x-sample-rate"] == "16000"


async def test_bad_input_is_400_or_422_with_a_json_error(gateway_http):
    client, fakes = gateway_http.client, gateway_http.fakes
    r = await client.post("/v1/translate", json={"text": "a", "source": "Malagasy", "target": "fr"})
    assert r.status_code == 422 and "source" in r.json()["error"]["message"]
    fakes.translate.fail = grpc.StatusCode.INVALID_ARGUMENT
    r = await client.post("/v1/translate", json={"text": "a", "source": "mg", "target": "fr"})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "translate: translate is broken",
    }
    r = await client.post("/v1/transcribe", files={"file": ("a.wav", b"", "audio/wav")})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]


async def test_a_body_that_is_not_json_is_said_so_and_models_are_stable(gateway_http):
    client = gateway_http.client
    r = await client.post(
        "/v1/chat/completions",
        content=b'{"messages":',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith("the body is not valid JSON: ") and error["param"] is None
    first, again = (await client.get("/v1/models")).json(), (await client.get("/v1/models")).json()
    assert first == again  # `created` is when the gateway started, not the time of the call


async def test_not_audio_is_415(gateway_http):
    r = await gateway_http.client.post(
        "/v1/transcribe", files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert r.status_code == 415 and "not audio" in r.json()["error"]["message"]


async def test_queue_full_upstream_is_429_with_retry_after(gateway_http):
    gateway_http.fakes.stt.fail = (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "queue full",
        ((RETRY_PUSHBACK_KEY, "2500"),),
    )
    r = await gateway_http.client.post(
        "/v1/transcribe", files={"file": ("a.wav", wav_bytes(), "audio/wav")}
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


async def test_service_down_is_503(gateway_http):
    await gateway_http.fakes.servers["translate"].stop(0)
    r = await gateway_http.client.post(
        "/v1/translate", json={"text": "a", "source": "mg", "target": "fr"}
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "UNAVAILABLE"
    assert (await gateway_http.client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("path", ["/", "/docs", "/openapi.json", "/static/app.js"])
async def test_page_and_docs_are_served(gateway_http, path):
    r = await gateway_http.client.get(path)
    assert r.status_code == 200, path


@pytest.fixture
async def tight():
    """A gateway with one HTTP slot and no queue, short STT deadline, small bodies, CORS."""
    gateway = await start_gateway(
        max_concurrency=1,
        max_queue=0,
        stt_timeout_s=0.5,
        max_request_bytes=4096,
        cors_origins=["http://example.org"],
    )
    yield gateway
    await stop_gateway(gateway)


async def test_gateway_queue_full_is_429_while_a_stream_holds_the_slot(tight):
    tight.fakes.llm.gate = asyncio.Event()
    body = {"messages": [{"role": "user", "content": "Salut"}]}
    async with tight.client.stream("POST", "/v1/chat", json=body) as first:
        assert first.status_code == 200
        lines = first.aiter_lines()
        assert (await anext(lines)).startswith("event: delta")  # the stream holds the slot
        second = await tight.client.post(
            "/v1/translate", json={"text": "a", "source": "mg", "target": "fr"}
        )
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        tight.fakes.llm.gate.set()
        rest = [line async for line in lines]
    assert "event: done" in rest
    after = await tight.client.post(
        "/v1/translate", json={"text": "a", "source": "mg", "target": "fr"}
    )
    assert after.status_code == 200  # the slot came back with the end of the stream


async def test_slow_service_is_504(tight):
    tight.fakes.stt.hold = asyncio.Event()
    r = await tight.client.post(
        "/v1/transcribe", files={"file": ("a.wav", b"RIFF" * 10, "audio/wav")}
    )
    tight.fakes.stt.hold.set()
    assert r.status_code == 504 and r.json()["error"]["code"] == "DEADLINE_EXCEEDED"


async def test_body_over_the_limit_is_413_with_or_without_a_length(tight):
    r = await tight.client.post(
        "/v1/transcribe", files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "REQUEST_TOO_LARGE"

    async def chunked():
        for _ in range(8):
            yield b"x" * 1024

    r = await tight.client.post(
        "/v1/translate", content=chunked(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert tight.fakes.translate.calls == []


async def test_cors_preflight_for_a_configured_origin_only(tight):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = await tight.client.options(
        "/v1/translate", headers={"Origin": "http://example.org", **preflight}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://example.org"
    other = await tight.client.options(
        "/v1/translate", headers={"Origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_openai_routes_answer_errors_in_openai_shape(gateway_http):
    r = await gateway_http.client.post("/v1/chat/completions", json={"model": "m"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    gateway_http.fakes.stt.fail = (grpc.StatusCode.UNAVAILABLE, "down", ())
    r = await gateway_http.client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", wav_bytes(), "audio/wav")},
        data={"model": "whisper-1"},
    )
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


async def test_keep_alive_replies_are_not_held_by_delayed_acks(gateway_http):
    """Without TCP_NODELAY on accepted sockets, each keep-alive reply written in two parts
    waits for the client's delayed ACK (~40 ms); with it, a reply takes about a millisecond."""
    times = []
    for _ in range(15):
        start = time.perf_counter()
        assert (await gateway_http.client.get("/healthz")).status_code == 200
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.025, times
