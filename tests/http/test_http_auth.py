"""Tier 4: a second gateway on the same services, with an API key, a small body limit and
TTS pointing at a port where nothing listens: auth on, 413, 503 and /readyz naming TTS.
(The main `stack` gateway has no key: auth off is every other test.)"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import httpx
import openai
import pytest
import websockets

sys.path.insert(0, str(Path(__file__).parents[1]))
from procs import ServiceProcess

pytestmark = pytest.mark.slow
KEY = "s3cret-key"


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def locked(stack):
    env = {
        f"MILO_GATEWAY_{n.upper()}_ADDRESS": stack.procs[n].address
        for n in ("stt", "translate", "llm")
    }
    env.update(
        MILO_GATEWAY_TTS_ADDRESS=dead_address(),
        MILO_GATEWAY_API_KEY=KEY,
        MILO_GATEWAY_MAX_REQUEST_BYTES=str(64 * 1024),
        MILO_GATEWAY_DEFAULT_USER_LANGUAGE="en",
    )
    with ServiceProcess("gateway", env, prefix="MILO_GATEWAY_") as proc:
        yield f"http://127.0.0.1:{proc.http_port}"


def test_health_is_open_and_readyz_names_the_service_down(locked):
    assert httpx.get(f"{locked}/healthz").status_code == 200
    ready = httpx.get(f"{locked}/readyz")
    assert ready.status_code == 503
    assert ready.json()["not_ready"] == ["tts"] and "tts is" in ready.json()["error"]["message"]


def test_key_is_required_in_either_header(locked):
    body = {"text": "Salama", "source": "mg", "target": "fr"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
        r = httpx.post(f"{locked}/v1/translate", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"] == "Bearer"
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert (
            httpx.post(f"{locked}/v1/translate", json=body, headers=headers, timeout=60).status_code
            == 200
        )


def test_openai_client_with_and_without_the_key(locked, speech_wav):
    bad = openai.OpenAI(base_url=f"{locked}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError), speech_wav.open("rb") as f:
        bad.audio.transcriptions.create(model="whisper-1", file=f)
    good = openai.OpenAI(base_url=f"{locked}/v1", api_key=KEY, max_retries=0, timeout=60)
    reply = good.chat.completions.create(
        model="milo", max_tokens=4, messages=[{"role": "user", "content": "Salut"}]
    )
    assert reply.choices[0].message.role == "assistant"


async def test_websocket_needs_the_key(locked):
    url = locked.replace("http://", "ws://") + "/v1/converse"
    async with websockets.connect(url) as ws:
        error = json.loads(await ws.recv())
        assert error["error"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401
    async with websockets.connect(f"{url}?api_key={KEY}") as ws:
        await ws.send(json.dumps({"config": {}}))
        assert json.loads(await ws.recv())["event"] == "session_started"


def test_too_large_is_413_and_service_down_is_503(locked, speech_wav):
    auth = {"X-API-Key": KEY}
    r = httpx.post(
        f"{locked}/v1/transcribe",
        headers=auth,
        files={"file": ("q.wav", speech_wav.read_bytes(), "audio/wav")},
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = httpx.post(f"{locked}/v1/speak", json={"text": "Salama"}, headers=auth, timeout=60)
    assert r.status_code == 503 and r.json()["error"]["code"] == "UNAVAILABLE"
    assert r.json()["error"]["message"].startswith("tts:")
