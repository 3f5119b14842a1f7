"""Tier 4: every HTTP route against the running stack (four services on the demo models and
the gateway, each in its own process). The demo STT is tiny.en, so speech is English."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.base, timeout=120) as c:
        yield c


def test_operations(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["services"] == dict.fromkeys(("stt", "translate", "llm", "tts"), "SERVING")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "milo_gateway_dependency_up" in metrics.text
    status = client.get("/v1/status").json()
    by_name = {s["name"]: s for s in status["services"]}
    assert all(s["model_id"] and s["status"] == "SERVING" for s in by_name.values())
    stt = by_name["stt"]["metrics"]  # read from the service's own /metrics
    assert stt["queue_depth"] == 0 and stt["rss_bytes"] > 0 and stt["device"] == "cpu"
    assert client.get("/docs").status_code == 200
    assert "/v1/audio/speech" in client.get("/openapi.json").json()["paths"]


def test_transcribe_a_wav_file(client, speech_wav: Path):
    r = client.post(
        "/v1/transcribe", files={"file": ("q.wav", speech_wav.read_bytes(), "audio/wav")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "weather" in body["text"].lower() and body["language"] == "en"
    words = [w for s in body["segments"] for w in s["words"]]
    assert words and all(w["end_ms"] >= w["start_ms"] for w in words)


def test_translate(client):
    r = client.post(
        "/v1/translate", json={"text": "Salama tompoko.", "source": "mg", "target": "fr"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target_model_code"] == "fra_Latn" and isinstance(body["text"], str)
    assert body["input_tokens"] > 0


def test_chat_streams_deltas_then_done(client):
    body = {"messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 12, "seed": 3}
    with client.stream("POST", "/v1/chat", json=body) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[-1] == "done" and events.count("delta") >= 1
    done = json.loads(lines[-1].removeprefix("data: "))
    assert done["usage"]["completion_tokens"] >= 1 and done["finish_reason"] in ("stop", "length")


def test_speak_streams_wav(client):
    with client.stream("POST", "/v1/speak", json={"text": "Manao ahoana ianao?"}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        pieces = list(r.iter_bytes())
    data = b"".join(pieces)
    assert data[:4] == b"RIFF" and len(data) > 44 + 1600  # more than 50 ms of 16 kHz audio
    assert int(r.headers["x-sample-rate"]) == 16000


def test_bad_input_gets_400_from_the_service(client):
    r = client.post("/v1/speak", json={"text": "Manao ahoana", "voice": "nobody"})
    assert r.status_code == 400 and "voice" in r.json()["error"]["message"]
    r = client.post("/v1/transcribe", files={"file": ("x.wav", b"RIFFnot really", "audio/wav")})
    assert r.status_code == 400, r.text
    assert client.get("/readyz").status_code == 200  # the services are still SERVING
