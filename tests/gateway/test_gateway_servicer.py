"""Tier 2: the gateway's servicer on a real server, against fake services on real servers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.translate.v1 import translate_pb2

sys.path.insert(0, str(Path(__file__).parent))
from fakes import Conversation, FakeServices, serve_gateway

PCM16K = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000, channels=1
)


@pytest.fixture
async def stack():
    fakes = FakeServices()
    await fakes.start()
    host = await serve_gateway(fakes)
    fakes.gateway_address = f"127.0.0.1:{host.port}"
    channel = grpc.aio.insecure_channel(fakes.gateway_address)
    yield fakes, gateway_pb2_grpc.ConversationStub(channel)
    await channel.close()
    await host.stop(grace=0)
    await fakes.stop()


def first_index(kinds: list[str], kind: str) -> int:
    return kinds.index(kind)


async def test_text_turn_streams_every_stage_in_order(stack):
    fakes, stub = stack
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Manao ahoana"))
    ended = await conv.until("turn_ended")
    assert ended.turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
    kinds = conv.kinds(turn_id=1)
    order = ["translation", "llm_delta", "reply_sentence", "audio", "latency", "turn_ended"]
    assert [first_index(kinds, k) for k in order] == sorted(first_index(kinds, k) for k in order)
    sentences = [e.reply_sentence for e in conv.events if e.HasField("reply_sentence")]
    assert [s.pivot_text for s in sentences] == ["Bonjour.", "Comment allez-vous?", "Très bien."]
    assert sentences[0].text == "[mg] Bonjour."
    assert fakes.translate.calls[0] == ("Manao ahoana", "mg", "fr")
    assert fakes.llm.requests[0].messages[-1].content == "[fr] Manao ahoana"
    audio = [e.audio for e in conv.events if e.HasField("audio")]
    assert audio[0].format.sample_rate_hz == 16000 and not audio[1].HasField("format")
    assert [a.chunk.index for a in audio] == list(range(len(audio)))
    latency = next(e.latency for e in conv.events if e.HasField("latency"))
    assert latency.HasField("llm_first_token_ms") and latency.HasField(
        "end_of_speech_to_first_audio_ms"
    )
    assert not latency.HasField("stt_final_ms")  # text in: no STT stage
    assert latency.llm_completion_tokens == 5
    conv.close()


async def test_first_audio_leaves_before_the_llm_has_finished(stack):
    fakes, stub = stack
    fakes.llm.gate = asyncio.Event()  # the LLM stops after its first sentence until released
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("audio")
    assert fakes.llm.produced == 1  # only "Bonjour." written so far
    fakes.llm.gate.set()
    await conv.until("turn_ended")
    conv.close()


async def test_barge_in_stops_the_reply_and_generation(stack):
    fakes, stub = stack
    fakes.llm.gate = asyncio.Event()
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("audio")
    conv.send(control=gw.Control(action=gw.Control.ACTION_BARGE_IN))
    barged = await conv.until("barged_in")
    ended = await conv.until("turn_ended")
    assert ended.turn_ended.reason == gw.TurnEnded.REASON_BARGED_IN
    await asyncio.wait_for(fakes.llm.cancelled.wait(), 5)  # generation stopped upstream
    assert fakes.llm.produced == 1
    after = conv.events[conv.events.index(barged) :]
    assert not [e for e in after if e.HasField("audio")]
    fakes.llm.gate = None
    conv.send(text=gw.UserText(text="Indray"))  # the next turn works
    ended = await conv.until("turn_ended", turn_id=2)
    assert ended.turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
    history = fakes.llm.requests[1].messages
    assert [m.content for m in history][-3:] == ["[fr] Salama", "Bonjour.", "[fr] Indray"]
    conv.close()


async def test_barge_in_then_a_new_turn_at_once_ends_each_turn_exactly_once(stack):
    fakes, stub = stack
    fakes.llm.gate = asyncio.Event()
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("audio")
    fakes.llm.gate = None
    conv.send(control=gw.Control(action=gw.Control.ACTION_BARGE_IN))
    conv.send(text=gw.UserText(text="Indray"))  # while turn 1 is still winding down
    conv.send(control=gw.Control(action=gw.Control.ACTION_BARGE_IN))  # turn 2, or nothing
    conv.send(text=gw.UserText(text="Fahatelo"))
    await conv.until("turn_ended", turn_id=3)
    ended = [e for e in conv.events if e.HasField("turn_ended")]
    assert sorted(e.turn_id for e in ended) == [1, 2, 3]
    assert ended[-1].turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
    assert all(k == "turn_ended" for k in conv.kinds(1)[conv.kinds(1).index("turn_ended") :])
    conv.close()


async def test_translate_down_gives_in_band_error_and_the_session_goes_on(stack):
    fakes, stub = stack
    fakes.translate.fail = grpc.StatusCode.UNAVAILABLE
    conv = Conversation(stub, gw.SessionConfig())
    conv.send(text=gw.UserText(text="Salama"))
    error = await conv.until("error")
    assert error.error.stage == gw.STAGE_TRANSLATE_IN and error.error.code == "UNAVAILABLE"
    assert (await conv.until("turn_ended")).turn_ended.reason == gw.TurnEnded.REASON_ERROR
    fakes.translate.fail = None
    conv.send(text=gw.UserText(text="Indray"))
    ended = await conv.until("turn_ended", turn_id=2)
    assert ended.turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
    conv.close()


async def test_text_out_mode_sends_no_audio(stack):
    fakes, stub = stack
    conv = Conversation(stub, gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT))
    conv.send(text=gw.UserText(text="Salama"))
    await conv.until("turn_ended")
    assert "reply_sentence" in conv.kinds() and "audio" not in conv.kinds()
    assert fakes.tts.texts == []
    conv.close()


async def test_french_mode_translates_nothing(stack):
    fakes, stub = stack
    conv = Conversation(stub, gw.SessionConfig(user_language="fr"))
    conv.send(text=gw.UserText(text="Bonjour"))
    await conv.until("turn_ended")
    assert fakes.translate.calls == [] and "translation" not in conv.kinds()
    assert fakes.tts.texts[0] == "Bonjour."
    conv.close()


async def test_client_brain_gets_the_pivot_transcript_and_its_reply_is_spoken(stack):
    fakes, stub = stack
    conv = Conversation(stub, gw.SessionConfig(brain=gw.BRAIN_CLIENT, input_format=PCM16K))
    for _ in range(5):
        conv.send(audio=b"\x00\x00" * 3200)  # 5 x 200 ms; the fake STT finalizes at 1 s
    translation = await conv.until("translation")
    assert translation.translation.text == "[fr] hello there"
    conv.send(reply=gw.ReplyText(text="Très bien. Merci."))
    ended = await conv.until("turn_ended")
    assert ended.turn_id == translation.turn_id
    assert fakes.llm.requests == []
    assert fakes.tts.texts == ["[mg] Très bien.", "[mg] Merci."]
    kinds = conv.kinds(translation.turn_id)
    assert kinds.index("speech_started") < kinds.index("transcript") < kinds.index("translation")
    latency = next(e.latency for e in conv.events if e.HasField("latency"))
    assert latency.HasField("stt_final_ms")
    conv.close()


async def test_voice_turn_from_audio_to_reply(stack):
    _, stub = stack
    conv = Conversation(stub, gw.SessionConfig(input_format=PCM16K))
    conv.send(audio=b"\x00\x00" * 8000)
    conv.send(control=gw.Control(action=gw.Control.ACTION_END_OF_UTTERANCE))
    await conv.until("turn_ended")
    finals = [e.transcript for e in conv.events if e.HasField("transcript")]
    assert [t.is_final for t in finals] == [False, True] and finals[1].text == "hello there"
    assert "audio" in conv.kinds()
    conv.close()


async def test_audio_before_config_is_invalid_argument(stack):
    _, stub = stack

    async def requests():
        yield gw.ConverseRequest(audio=b"\x00\x00")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.Converse(requests()):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message" in err.value.details()


async def test_bad_config_is_invalid_argument(stack):
    _, stub = stack
    for config in [
        gw.SessionConfig(user_language="Malagasy!"),
        gw.SessionConfig(
            input_format=audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_CONTAINER)
        ),
    ]:
        conv = Conversation(stub, config)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await conv.until("session_started")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_client_mistakes_get_in_band_errors_and_the_stream_goes_on(stack):
    _, stub = stack
    conv = Conversation(stub, gw.SessionConfig(input_format=PCM16K))
    await conv.until("session_started")
    conv.send(config=gw.SessionConfig())
    assert "already configured" in (await conv.until("error")).error.message
    conv.send(control=gw.Control(action=42))
    assert "unknown control" in (await conv.until("error")).error.message
    conv.send(audio=b"\x00" * (512 * 1024))
    assert "over the limit" in (await conv.until("error")).error.message
    conv.send(text=gw.UserText(text="Salama"))
    ended = await conv.until("turn_ended")
    assert ended.turn_ended.reason == gw.TurnEnded.REASON_COMPLETED
    conv.close()


async def test_gateway_health_reflects_each_dependency_and_stays_serving(stack):
    fakes, _ = stack
    async with grpc.aio.insecure_channel(fakes.gateway_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        statuses: dict[str, int] = {}

        async def refresh() -> None:
            for name in ("", "milo.stt.v1.Stt", "milo.translate.v1.Translator"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                statuses[name] = reply.status

        serving = health_pb2.HealthCheckResponse.SERVING
        translate = "milo.translate.v1.Translator"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        await refresh()
        while statuses[translate] != serving:  # the watcher sees the fake come up
            assert loop.time() < deadline, "translate never SERVING"
            await refresh()
        await fakes.servers["translate"].stop(0)
        while statuses[translate] == serving:
            assert loop.time() < deadline + 10, "translate still SERVING"
            await refresh()
        assert statuses[""] == serving  # the gateway itself goes on serving
        assert statuses["milo.stt.v1.Stt"] == serving


async def test_unary_routes_reach_one_service_and_pass_errors_through(stack):
    fakes, stub = stack
    reply = await stub.Translate(
        gw.TranslateRequest(
            request=translate_pb2.TranslateRequest(
                texts=["a"], source_language="mg", target_language="fr"
            )
        )
    )
    assert reply.response.translations[0].text == "[fr] a"
    fakes.translate.fail = grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Translate(
            gw.TranslateRequest(
                request=translate_pb2.TranslateRequest(
                    texts=["a"], source_language="mg", target_language="fr"
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("translate:")
    describe = await stub.Describe(gw.DescribeRequest())
    assert {d.name for d in describe.dependencies} == {"stt", "translate", "llm", "tts"}
