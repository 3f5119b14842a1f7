"""Tier 2: how turns end, against fake services on real servers: every ending is counted in
milo_gateway_turns, a sentence with nothing to say is skipped and the rest is spoken, and
the gRPC and HTTP sides share one admission pool."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import httpx
import pytest
import websockets
from prometheus_client import REGISTRY

from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from milo.translate.v1 import translate_pb2

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import Conversation, FakeServices, serve_gateway
from procs import wait_until

PCM16K = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000, channels=1
)
Reason = gw.TurnEnded.Reason


@pytest.fixture
async def stack():
    fakes = FakeServices()
    await fakes.start()
    host = await serve_gateway(fakes)
    fakes.core = host.service.core  # type: ignore[attr-defined]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    yield fakes, gateway_pb2_grpc.ConversationStub(channel)
    await channel.close()
    await host.stop(grace=0)
    await fakes.stop()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TurnCount:
    """milo_gateway_turns by reason, from the start of a test."""

    def __init__(self) -> None:
        self.start = {v.name: self.now(v.name) for v in Reason.DESCRIPTOR.values}

    @staticmethod
    def now(reason: str) -> float:
        return counted("milo_gateway_turns_total", reason=reason)

    def added(self) -> dict[str, float]:
        added = {r: self.now(r) - n for r, n in self.start.items()}
        return {r: n for r, n in added.items() if n}


# ---- every ending is counted ----------------------------------------------------------


async def test_completed_barged_in_and_cancelled_turns_are_counted(stack):
    fakes, stub = stack
    count = TurnCount()
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("turn_ended", turn_id=1)
    for turn_id, action in ((2, gw.Control.ACTION_BARGE_IN), (3, gw.Control.ACTION_CANCEL)):
        fakes.llm.gate = asyncio.Event()
        conv.send(text=gw.UserText(text="Indray"))
        await conv.until("audio", turn_id=turn_id)
        conv.send(control=gw.Control(action=action))
        await conv.until("turn_ended", turn_id=turn_id)
    conv.close()
    assert count.added() == {"REASON_COMPLETED": 1, "REASON_BARGED_IN": 1, "REASON_CANCELLED": 1}


async def test_a_failed_stage_is_counted_with_its_error(stack):
    fakes, stub = stack
    count = TurnCount()
    errors = counted(
        "milo_gateway_turn_errors_total", stage="STAGE_TRANSLATE_IN", code="UNAVAILABLE"
    )
    fakes.translate.fail = grpc.StatusCode.UNAVAILABLE
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    ended = await conv.until("turn_ended")
    conv.close()
    assert ended.turn_ended.reason == Reason.REASON_ERROR
    assert count.added() == {"REASON_ERROR": 1}
    assert (
        counted("milo_gateway_turn_errors_total", stage="STAGE_TRANSLATE_IN", code="UNAVAILABLE")
        == errors + 1
    )


async def test_an_empty_transcript_is_counted(stack):
    fakes, stub = stack
    fakes.stt.text = ""
    count = TurnCount()
    conv = Conversation(stub, gw.SessionConfig(input_format=PCM16K))
    conv.send(audio=b"\x00\x00" * 8000)
    conv.send(control=gw.Control(action=gw.Control.ACTION_END_OF_UTTERANCE))
    ended = await conv.until("turn_ended")
    conv.close()
    assert ended.turn_ended.reason == Reason.REASON_EMPTY
    assert count.added() == {"REASON_EMPTY": 1}


async def test_a_turn_lost_to_stt_is_counted_with_its_error(stack):
    fakes, stub = stack
    fakes.stt.fail = grpc.StatusCode.UNAVAILABLE
    count = TurnCount()
    conv = Conversation(stub, gw.SessionConfig(input_format=PCM16K))
    conv.send(audio=b"\x00\x00" * 1600)
    error = await conv.until("error")
    ended = await conv.until("turn_ended")
    conv.close()
    assert error.error.stage == gw.STAGE_STT and error.error.code == "UNAVAILABLE"
    assert ended.turn_ended.reason == Reason.REASON_ERROR
    assert count.added() == {"REASON_ERROR": 1}


async def test_a_turn_cut_by_the_client_leaving_is_counted_as_cancelled(stack):
    fakes, stub = stack
    fakes.llm.gate = asyncio.Event()
    count = TurnCount()
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("audio")
    conv.call.cancel()
    await asyncio.wait_for(fakes.llm.cancelled.wait(), 5)  # generation stopped upstream
    await wait_until(lambda: count.added() == {"REASON_CANCELLED": 1})


async def test_a_session_ends_with_the_task_that_reads_it_even_if_its_stream_is_left_open(stack):
    # A reader that stops without closing the event stream (as when a client's cancel
    # lands while gRPC sends): the session must still end, and the LLM call with it.
    fakes, _ = stack
    fakes.llm.gate = asyncio.Event()
    left_open = []  # keeps the stream from the garbage collector, which would close it

    async def requests():
        yield gw.ConverseRequest(config=gw.SessionConfig())
        yield gw.ConverseRequest(text=gw.UserText(text="Salama"))
        await asyncio.Event().wait()  # the client says nothing more

    async def reader() -> None:
        stream = fakes.core.converse(requests())
        left_open.append(stream)
        async for event in stream:
            if event.HasField("audio"):
                return

    await asyncio.create_task(reader())
    await asyncio.wait_for(fakes.llm.cancelled.wait(), 5)  # generation stopped upstream


async def test_an_llm_stream_ends_with_the_task_that_opened_it_even_if_left_open(stack):
    # The HTTP routes relay core.chat: a response abandoned mid-stream must not leave the
    # LLM generating until the garbage collector finds the generator.
    fakes, _ = stack
    fakes.llm.gate = asyncio.Event()
    left_open = []
    request = llm_pb2.ChatRequest(
        messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content="Salama")]
    )

    async def reader() -> None:
        stream = fakes.core.chat(request)
        left_open.append(stream)
        await anext(stream)

    await asyncio.create_task(reader())
    await asyncio.wait_for(fakes.llm.cancelled.wait(), 5)


async def test_a_client_brain_turn_never_answered_ends_when_the_next_starts(stack):
    _, stub = stack
    count = TurnCount()
    conv = Conversation(stub, gw.SessionConfig(brain=gw.BRAIN_CLIENT))
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("translation", turn_id=1)
    conv.send(text=gw.UserText(text="Indray"))
    ended = await conv.until("turn_ended", turn_id=1)
    assert ended.turn_ended.reason == Reason.REASON_CANCELLED
    await conv.until("translation", turn_id=2)
    conv.send(reply=gw.ReplyText(text="Eny."))
    await conv.until("turn_ended", turn_id=2)
    conv.close()
    assert count.added() == {"REASON_CANCELLED": 1, "REASON_COMPLETED": 1}


# ---- a sentence with nothing to say ---------------------------------------------------

UNSAYABLE = ["😀", "#", "...", "¿?", "* * *", "🇲🇬 ✨", "—"]


def unspoken(reason: str) -> float:
    return counted("milo_gateway_unspoken_sentences_total", reason=reason)


async def test_unsayable_sentences_of_a_client_reply_are_skipped_and_the_rest_spoken(stack):
    fakes, stub = stack
    before = unspoken("nothing_to_say")
    conv = Conversation(stub, gw.SessionConfig(brain=gw.BRAIN_CLIENT))
    conv.send(reply=gw.ReplyText(text="\n".join(["Très bien.", *UNSAYABLE, "Merci."])))
    ended = await conv.until("turn_ended")
    conv.close()
    assert ended.turn_ended.reason == Reason.REASON_COMPLETED
    assert fakes.tts.texts == ["[mg] Très bien.", "[mg] Merci."]
    assert [call[0] for call in fakes.translate.calls] == ["Très bien.", "Merci."]
    assert unspoken("nothing_to_say") == before + len(UNSAYABLE)
    sentences = [e.reply_sentence for e in conv.events if e.HasField("reply_sentence")]
    assert [s.pivot_text for s in sentences][1:-1] == UNSAYABLE  # shown, not spoken
    spoken = {e.audio.sentence_index for e in conv.events if e.HasField("audio")}
    assert spoken == {0, len(UNSAYABLE) + 1}


async def test_unsayable_sentences_from_the_llm_are_skipped_and_the_rest_spoken(stack):
    fakes, stub = stack
    fakes.llm.reply = "Bonjour.\n🙂\n# #\n…\nAu revoir."
    conv = Conversation(stub, gw.SessionConfig(user_language="fr"))
    conv.send(text=gw.UserText(text="Salut"))
    ended = await conv.until("turn_ended")
    conv.close()
    assert ended.turn_ended.reason == Reason.REASON_COMPLETED
    assert fakes.tts.texts == ["Bonjour.", "Au revoir."]


async def test_a_sentence_tts_refuses_is_skipped_and_a_reply_it_refuses_whole_fails(stack):
    fakes, stub = stack
    fakes.tts.refuse = {"[mg] Comment allez-vous?"}
    before = unspoken("tts_refused")
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    ended = await conv.until("turn_ended", turn_id=1)
    assert ended.turn_ended.reason == Reason.REASON_COMPLETED
    assert fakes.tts.texts == ["[mg] Bonjour.", "[mg] Très bien."]
    assert unspoken("tts_refused") == before + 1
    fakes.tts.refuse = {"[mg] Bonjour.", "[mg] Comment allez-vous?", "[mg] Très bien."}
    conv.send(text=gw.UserText(text="Indray"))  # nothing can be said: a wrong voice, say
    error = await conv.until("error", turn_id=2)
    assert error.error.stage == gw.STAGE_TTS and error.error.code == "INVALID_ARGUMENT"
    ended = await conv.until("turn_ended", turn_id=2)
    assert ended.turn_ended.reason == Reason.REASON_ERROR
    conv.close()


# ---- one admission pool ---------------------------------------------------------------


async def test_grpc_and_http_share_one_admission_pool():
    fakes = FakeServices()
    await fakes.start()
    host = await serve_gateway(fakes, max_concurrency=1, max_queue=0)
    http = f"127.0.0.1:{host.service.http_port}"  # type: ignore[attr-defined]
    translate = {"text": "a", "source": "mg", "target": "fr"}
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
            httpx.AsyncClient(base_url=f"http://{http}") as client,
        ):
            stub = gateway_pb2_grpc.ConversationStub(channel)
            assert (await client.post("/v1/translate", json=translate)).status_code == 200
            conv = Conversation(stub, gw.SessionConfig())  # gRPC holds the one slot
            await conv.until("session_started")
            busy = await client.post("/v1/translate", json=translate)
            assert busy.status_code == 429 and busy.headers["Retry-After"]
            conv.close()
            async for _ in conv.call:
                pass
            admission = host.admission
            await wait_until(lambda: admission.active == 0)
            async with websockets.connect(f"ws://{http}/v1/converse") as ws:  # HTTP holds it
                await ws.send(json.dumps({"config": {}}))
                assert json.loads(await ws.recv())["event"] == "session_started"
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Translate(
                        gw.TranslateRequest(
                            request=translate_pb2.TranslateRequest(
                                texts=["a"], source_language="mg", target_language="fr"
                            )
                        )
                    )
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await host.stop(grace=0)
        await fakes.stop()
