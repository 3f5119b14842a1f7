"""Tier 2: the OpenAI Realtime API at /v1/realtime, driven by the official `openai` SDK's
realtime client, over the gateway's fake services (tests/gateway/fakes.py): the fake STT
hears speech on the first audio and gives its final after 32000 bytes; the fake LLM says
three sentences; the fake TTS speaks 100 ms a word at 16 kHz."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import av
import openai
import pytest
import websockets
from conftest import Gateway, start_gateway, stop_gateway

pytestmark = pytest.mark.timeout(60)
TEXT_ITEM = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "Salama"}],
}


@contextlib.asynccontextmanager
async def realtime(gateway: Gateway, key: str = "unused") -> AsyncIterator[Any]:
    client = openai.AsyncOpenAI(base_url=f"{gateway.base}/v1", api_key=key, max_retries=0)
    async with client.realtime.connect(model="milo") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        yield conn


async def until(conn: Any, kind: str, seen: list[Any] | None = None) -> Any:
    """Events up to the first of `kind` (kept in `seen`); that one is returned."""
    async with asyncio.timeout(20):
        while True:
            event = await conn.recv()
            if seen is not None:
                seen.append(event)
            if event.type == kind:
                return event


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


async def text_turn(conn: Any) -> None:
    await conn.conversation.item.create(item=TEXT_ITEM)
    await conn.response.create()


async def test_a_text_turn_streams_audio_and_its_transcript_then_done(gateway_http):
    async with realtime(gateway_http) as conn:
        await text_turn(conn)
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
    kinds = types(seen)
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta")
    audio = b"".join(
        base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"
    )
    assert abs(len(audio) - 2 * 24000 * 0.8) < 200  # 8 words of 100 ms, resampled to 24 kHz
    transcript = "".join(
        e.delta for e in seen if e.type == "response.output_audio_transcript.delta"
    )
    assert transcript == "[mg] Bonjour. [mg] Comment allez-vous? [mg] Très bien."
    assert done.response.status == "completed"
    assert done.response.usage.output_tokens == 5  # the fake LLM's words
    assert done.response.output[0].content[0].transcript == transcript
    extra = {e.type: e for e in seen if e.type.startswith("milo.")}
    assert set(extra) == {"milo.translation", "milo.reply_sentence", "milo.latency"}
    assert extra["milo.translation"].model_dump()["text"] == "[fr] Salama"  # the pivot text
    assert extra["milo.latency"].model_dump()["end_of_speech_to_first_audio_ms"] > 0


async def test_a_spoken_turn_with_server_vad(gateway_http):
    async with realtime(gateway_http) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "transcription": {"model": "whisper-1"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    }
                },
            }
        )
        updated = await until(conn, "session.updated")
        td = updated.session.audio.input.turn_detection
        assert (td.silence_duration_ms, td.prefix_padding_ms) == (300, 200)
        chunk = base64.b64encode(bytes(960)).decode()  # 20 ms at 24 kHz
        for _ in range(34):
            await conn.input_audio_buffer.append(audio=chunk)
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
    kinds = types(seen)
    order = [
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
    ]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)
    completed = seen[kinds.index("conversation.item.input_audio_transcription.completed")]
    assert completed.transcript == "hello there"
    assert done.response.status == "completed"
    settings = gateway_http.fakes.stt  # the STT stream was asked for 24 kHz s16le
    assert settings is not None


async def test_a_mu_law_session_round_trip(gateway_http):
    async with realtime(gateway_http) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}},
                    "output": {"format": {"type": "audio/pcmu"}},
                },
            }
        )
        updated = await until(conn, "session.updated")
        assert updated.session.audio.output.format.type == "audio/pcmu"
        for _ in range(101):  # 20 ms of mu-law silence each: 2.02 s, 32 kB as s16le
            await conn.input_audio_buffer.append(audio=base64.b64encode(b"\xff" * 160).decode())
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
    audio = b"".join(
        base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"
    )
    assert done.response.status == "completed"
    assert abs(len(audio) - 8000 * 0.8) < 80  # one byte a sample at 8 kHz
    codec = av.CodecContext.create("pcm_mulaw", "r")
    codec.sample_rate, codec.layout = 8000, "mono"  # type: ignore[attr-defined]
    decoded = sum(f.samples for f in codec.decode(av.Packet(audio)))  # type: ignore[attr-defined]
    assert decoded == len(audio)


async def test_response_cancel_stops_the_audio_and_the_llm(gateway_http):
    llm = gateway_http.fakes.llm
    llm.gate = asyncio.Event()  # the LLM waits after its first sentence
    async with realtime(gateway_http) as conn:
        await text_turn(conn)
        await until(conn, "response.output_audio.delta")
        await conn.response.cancel()
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        await asyncio.wait_for(llm.cancelled.wait(), 10)
        await conn.response.cancel()  # nothing left to cancel: an error, the session goes on
        error = await until(conn, "error")
        assert "no response in progress" in error.error.message


async def test_barge_in_by_speech_cancels_the_reply_and_truncate_records_it(gateway_http):
    gateway_http.fakes.llm.gate = asyncio.Event()
    async with realtime(gateway_http) as conn:
        await text_turn(conn)
        first = await until(conn, "response.output_audio.delta")
        await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(960)).decode())
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
        # OpenAI's order: the VAD start event, then the response it interrupts ends
        assert "input_audio_buffer.speech_started" in types(seen)
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        await conn.conversation.item.truncate(
            item_id=first.item_id, content_index=0, audio_end_ms=40
        )
        truncated = await until(conn, "conversation.item.truncated")
        assert (truncated.item_id, truncated.audio_end_ms) == (first.item_id, 40)
        await conn.conversation.item.truncate(
            item_id=first.item_id, content_index=0, audio_end_ms=99_000
        )
        assert "audio_end_ms" in (await until(conn, "error")).error.message


async def test_turn_detection_off_buffers_until_commit(gateway_http):
    async with realtime(gateway_http) as conn:
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        await until(conn, "session.updated")
        await conn.input_audio_buffer.commit()
        assert "less than 100 ms" in (await until(conn, "error")).error.message
        await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(9600)).decode())
        await conn.input_audio_buffer.clear()
        await until(conn, "input_audio_buffer.cleared")
        await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(48000)).decode())
        await conn.input_audio_buffer.commit()
        seen: list[Any] = []
        await conn.response.create()  # the committed audio's response: no second one
        done = await until(conn, "response.done", seen)
    assert "input_audio_buffer.speech_started" not in types(seen)
    assert types(seen)[0] == "input_audio_buffer.committed"
    assert types(seen).count("response.created") == 1 and "error" not in types(seen)
    assert done.response.status == "completed"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("a string", "a JSON object"),
        ({"type": "session.dance"}, "unknown event type 'session.dance'"),
        ({"type": "input_audio_buffer.append", "audio": "%%%not base64"}, "not valid base64"),
        (
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/mp3"}}}},
            },
            "unsupported audio format",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            },
            "24000 Hz only",
        ),
        (
            {"type": "conversation.item.create", "item": {"type": "function_call_output"}},
            "message item",
        ),
        ({"type": "response.create"}, "nothing to respond to"),
    ],
)
async def test_bad_events_get_an_error_and_the_session_goes_on(gateway_http, event, message):
    async with realtime(gateway_http) as conn:
        await conn.send(event)  # type: ignore[arg-type]
        error = await until(conn, "error")
        assert message in error.error.message
        assert error.error.type == "invalid_request_error"
        await text_turn(conn)
        assert (await until(conn, "response.done")).response.status == "completed"


async def test_a_frame_that_is_not_json_gets_an_error(gateway_http):
    ws = await raw_socket(gateway_http)
    assert json.loads(await ws.recv())["type"] == "session.created"
    await ws.send("{not json")
    assert "not JSON" in json.loads(await ws.recv())["error"]["message"]
    await ws.send(b"\x00\x01")
    assert "binary frames" in json.loads(await ws.recv())["error"]["message"]
    await ws.close()


async def test_beta_session_fields_are_read_and_ga_names_are_sent(gateway_http):
    async with realtime(gateway_http) as conn:
        await conn.send(
            {
                "type": "session.update",
                "session": {  # type: ignore[arg-type]
                    "modalities": ["text"],
                    "input_audio_format": "g711_alaw",
                    "voice": "ash",
                    "input_audio_transcription": None,
                    "turn_detection": None,
                },
            }
        )
        session = (await until(conn, "session.updated")).session
        assert session.output_modalities == ["text"] and session.audio.output.voice == "ash"
        assert session.audio.input.format.type == "audio/pcma"
        assert session.audio.input.turn_detection is None
        await text_turn(conn)
        seen: list[Any] = []
        await until(conn, "response.done", seen)
    assert "response.output_text.delta" in types(seen)
    assert not {"response.output_audio.delta", "response.audio.delta"} & set(types(seen))


# --- auth ---------------------------------------------------------------------------------


@pytest.fixture
async def keyed() -> AsyncIterator[Gateway]:
    gateway = await start_gateway(api_key="sesame")
    yield gateway
    await stop_gateway(gateway)


async def raw_socket(gateway: Gateway, **kwargs: Any) -> Any:
    url = f"ws://127.0.0.1:{gateway.service.http_port}/v1/realtime?model=milo"
    return await websockets.connect(url, **kwargs)


async def test_auth_by_header_or_browser_subprotocol_and_refused_without(keyed):
    async with realtime(keyed, key="sesame") as conn:
        await text_turn(conn)
        assert (await until(conn, "response.done")).response.status == "completed"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with realtime(keyed, key="wrong"):
            pass
    assert refused.value.response.status_code == 401
    ws = await raw_socket(keyed, subprotocols=["realtime", "openai-insecure-api-key.sesame"])
    assert ws.subprotocol == "realtime"
    assert json.loads(await ws.recv())["type"] == "session.created"
    await ws.close()


async def test_a_client_secret_opens_one_session_until_it_expires(keyed):
    r = await keyed.client.post(
        "/v1/realtime/client_secrets",
        json={
            "expires_after": {"anchor": "created_at", "seconds": 60},
            "session": {"type": "realtime", "instructions": "Be brief."},
        },
    )
    assert r.status_code == 401  # minting needs the real key
    headers = {"Authorization": "Bearer sesame"}
    minted = (
        await keyed.client.post(
            "/v1/realtime/client_secrets",
            headers=headers,
            json={"session": {"type": "realtime", "instructions": "Be brief."}},
        )
    ).json()
    assert minted["value"].startswith("ek_") and minted["session"]["instructions"] == "Be brief."
    protocols = ["realtime", f"openai-insecure-api-key.{minted['value']}"]
    ws = await raw_socket(keyed, subprotocols=protocols)
    created = json.loads(await ws.recv())
    assert created["session"]["instructions"] == "Be brief."
    await ws.close()
    with pytest.raises(websockets.InvalidStatus):  # used once already
        await raw_socket(keyed, subprotocols=protocols)
    secrets = keyed.service.http.config.app.state.bridge.secrets  # type: ignore[union-attr]
    expired = (
        await keyed.client.post("/v1/realtime/client_secrets", headers=headers, json={})
    ).json()["value"]
    now = secrets.clock()
    secrets.clock = lambda: now + 601  # past the default 10 minutes
    with pytest.raises(websockets.InvalidStatus) as refused:
        await raw_socket(keyed, additional_headers={"Authorization": f"Bearer {expired}"})
    assert refused.value.response.status_code == 401
    assert b"expired" in refused.value.response.body


async def test_without_a_key_any_client_connects_but_an_expired_secret_is_refused(gateway_http):
    async with realtime(gateway_http, key="anything") as conn:
        await conn.session.update(session={"type": "realtime", "instructions": "Hi."})
        assert (await until(conn, "session.updated")).session.instructions == "Hi."
    with pytest.raises(websockets.InvalidStatus):
        await raw_socket(
            gateway_http, subprotocols=["realtime", "openai-insecure-api-key.ek_unknown"]
        )
