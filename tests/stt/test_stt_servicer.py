"""Tier 2: the STT servicer on a real ServiceHost (port 0) with a fake engine and an
energy VAD, so every event is deterministic."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from services.runtime.server import ServiceHost
from services.stt.config import SttSettings
from services.stt.service import make_service

sys.path.insert(0, str(Path(__file__).parent))
from procs import wait_until
from stt_support import (
    EnergyDetector,
    FakeEngine,
    chunks,
    finals,
    kinds,
    pcm_format,
    read_rest,
    silence,
    stream,
    stream_config,
    to_s16,
    tone,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class Stt:
    def __init__(self, host: ServiceHost, engine: FakeEngine, channel: grpc.aio.Channel) -> None:
        self.host, self.engine, self.channel = host, engine, channel
        self.stub = stt_pb2_grpc.SttStub(channel)

    async def serving(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service="milo.stt.v1.Stt"))
        return reply.status == SERVING


async def start(tmp_path: Path, engine: FakeEngine, **kw) -> Stt:
    settings = SttSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0, model_dir=tmp_path, **kw
    )
    service = make_service(settings, engine=engine, make_detector=EnergyDetector)
    host = ServiceHost(service, settings)
    await host.start()
    assert len(engine.calls) == 1  # the warm-up decode, before SERVING
    engine.calls.clear()
    return Stt(host, engine, grpc.aio.insecure_channel(f"127.0.0.1:{host.port}"))


@pytest.fixture
async def stt(tmp_path):
    s = await start(
        tmp_path,
        FakeEngine(),
        max_audio_bytes=200_000,
        vad_min_speech_ms=96,
        vad_min_silence_ms=320,
        vad_speech_pad_ms=96,
        partial_interval_ms=500,
    )
    yield s
    await s.channel.close()
    await s.host.stop(grace=0)
    assert s.engine.closed


def pcm_request(audio, **config) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(
        format=pcm_format(), audio=to_s16(audio), config=stt_pb2.RecognitionConfig(**config)
    )


async def test_describe_says_english_only_and_falls_back_from_mg(stt):
    info = await stt.stub.Describe(stt_pb2.DescribeRequest())
    assert (info.multilingual, list(info.languages), info.default_language) == (False, ["en"], "en")
    assert info.model_id == "fake-whisper" and info.model_sample_rate_hz == 16_000
    assert info.max_audio_bytes == 200_000 and info.word_timestamps and info.partial_results
    assert audio_pb2.AUDIO_ENCODING_CONTAINER in info.input_encodings


async def test_multilingual_model_keeps_mg_and_passes_the_language_explicitly(tmp_path):
    s = await start(tmp_path, FakeEngine(multilingual=True))
    try:
        assert (await s.stub.Describe(stt_pb2.DescribeRequest())).default_language == "mg"
        reply = await s.stub.Recognize(pcm_request(tone(1.0)))
        assert reply.language == "mg" and s.engine.calls[-1][1].language == "mg"
        await s.stub.Recognize(pcm_request(tone(1.0), language="fr", beam_size=2))
        assert (s.engine.calls[-1][1].language, s.engine.calls[-1][1].beam_size) == ("fr", 2)
    finally:
        await s.channel.close()
        await s.host.stop(grace=0)


async def test_recognize_returns_text_words_and_durations(stt):
    reply = await stt.stub.Recognize(
        pcm_request(np.concatenate([silence(0.5), tone(1.5), silence(0.5)]))
    )
    assert reply.text == "hello world" and reply.language == "en"
    assert reply.audio_duration_ms == 2500 and reply.processing_ms > 0
    words = reply.segments[0].words
    assert [w.word for w in words] == ["hello", "world"]
    assert words[0].end_ms <= words[1].start_ms and words[1].end_ms <= 2500
    assert stt.engine.calls[-1][0] == 40_000  # the whole clip, 16 kHz mono


async def test_recognize_of_silence_skips_the_model_and_returns_no_text(stt):
    reply = await stt.stub.Recognize(pcm_request(silence(3.0)))
    assert reply.text == "" and not reply.segments and reply.audio_duration_ms == 3000
    assert stt.engine.calls == []


async def test_hallucinated_segments_are_dropped(tmp_path):
    s = await start(tmp_path, FakeEngine(no_speech_prob=0.95, avg_logprob=-1.4))
    try:
        assert (await s.stub.Recognize(pcm_request(tone(1.0)))).text == ""
        responses = await stream(
            s.stub, stream_config(), to_s16(np.concatenate([tone(1.0), silence(1.0)]))
        )
        assert [f.text for f in finals(responses)] == [""]  # one final, no invented text
    finally:
        await s.channel.close()
        await s.host.stop(grace=0)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (stt_pb2.RecognizeRequest(audio=b"\x07not audio at all" * 20), "could not decode"),
        (stt_pb2.RecognizeRequest(audio=b""), "audio is empty"),
        (
            stt_pb2.RecognizeRequest(
                format=pcm_format(), audio=b"RIFF\0\0\0\0WAVEfmt " + bytes(40)
            ),
            "data is a WAV",
        ),
        (stt_pb2.RecognizeRequest(audio=bytes(210_000)), "the limit is 200000 bytes"),
        (pcm_request(tone(0.5), language="xx"), "unknown language code 'xx'"),
        (pcm_request(tone(0.5), language="fr"), "English-only"),
        (pcm_request(tone(0.5), beam_size=50), "beam_size must be between 1 and 20"),
    ],
)
async def test_bad_recognize_requests_are_invalid_argument_and_server_stays_serving(
    stt, request_, message
):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stt.stub.Recognize(request_)
    assert err.value.code() == INVALID and message in err.value.details()
    assert await stt.serving()


async def test_stream_two_utterances_give_events_in_order_and_two_finals(stt):
    audio = np.concatenate([silence(0.5), tone(1.0), silence(1.0), tone(1.0), silence(0.5)])
    responses = await stream(stt.stub, stream_config(), to_s16(audio))
    assert kinds(responses) == ["started0", "ended0", "final0", "started1", "ended1", "final1"]
    started, ended = responses[0].speech_started, responses[1].speech_ended
    assert abs(started.offset_ms - (500 - 96)) <= 32
    assert abs(ended.offset_ms - (1500 + 96)) <= 32
    first, second = finals(responses)
    assert first.text == second.text == "hello world"
    assert first.start_ms == started.offset_ms and first.end_ms == ended.offset_ms
    assert second.start_ms >= 2500 - 96 - 32 and second.segments[0].words[0].start_ms >= 2400
    processed = [r.audio_processed_ms for r in responses]
    assert processed == sorted(processed)
    assert processed[4] >= 3500 + 320  # speech ended once 320 ms of silence were heard


async def test_stream_sends_partials_before_the_final_of_a_long_utterance(stt):
    call = stt.stub.StreamingRecognize()
    await call.write(stream_config(partials=True))
    for request in chunks(to_s16(tone(2.0)), 640):
        await call.write(request)
    seen = [await call.read(), await call.read()]  # speech started, then a partial
    assert kinds(seen) == ["started0", "partial0"]
    assert seen[1].result.text == "hello world" and seen[1].result.end_ms <= 2000
    for request in chunks(to_s16(np.concatenate([tone(0.5), silence(1.0)])), 640):
        await call.write(request)
    await call.done_writing()
    rest = kinds(await read_rest(call))
    assert rest[-2:] == ["ended0", "final0"] and set(rest[:-2]) <= {"partial0"}
    best_effort = [o for _, o in stt.engine.calls if o.best_effort]
    assert best_effort and not any(o.word_timestamps for o in best_effort)


async def test_stream_end_finalizes_an_open_utterance(stt):
    responses = await stream(stt.stub, stream_config(), to_s16(tone(1.0)))
    assert kinds(responses) == ["started0", "ended0", "final0"]
    assert responses[1].speech_ended.offset_ms == 1000


async def test_stream_resamples_44k_stereo_chunks(stt):
    mono = np.concatenate([tone(1.0), silence(1.0)])
    stereo = np.repeat(mono[:, None], 2, axis=1)  # 16 kHz stereo, then declared as such
    fmt = pcm_format(rate=16_000, channels=2, encoding=audio_pb2.AUDIO_ENCODING_PCM_F32LE)
    responses = await stream(stt.stub, stream_config(fmt), stereo.astype("<f4").tobytes(), 1_000)
    assert kinds(responses) == ["started0", "ended0", "final0"]


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (
            stt_pb2.StreamingRecognizeRequest(audio=bytes(640)),
            "first message must be the StreamingConfig",
        ),
        (stream_config(pcm_format(encoding=audio_pb2.AUDIO_ENCODING_WAV)), "must be raw PCM"),
        (stream_config(pcm_format(rate=0)), "sample_rate_hz between"),
        (stream_config(recognition=stt_pb2.RecognitionConfig(language="xx")), "unknown language"),
        (stream_config(vad=stt_pb2.VadConfig(threshold=1.5)), "vad.threshold must be between"),
        (stream_config(partial_interval_ms=5), "partial_interval_ms must be between"),
    ],
)
async def test_bad_stream_start_is_invalid_argument(stt, first, message):
    call = stt.stub.StreamingRecognize()
    await call.write(first)
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == INVALID and message in err.value.details()
    assert await stt.serving()


async def test_second_config_or_contradicting_audio_mid_stream_is_invalid_argument(stt):
    for second, message in [
        (stream_config(), "only once"),
        (stt_pb2.StreamingRecognizeRequest(audio=b"OggS" + bytes(60)), "data is an Ogg file"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            call = stt.stub.StreamingRecognize()
            await call.write(stream_config())
            await call.write(second)
            await call.done_writing()
            [r async for r in call]
        assert err.value.code() == INVALID and message in err.value.details()
    assert await stt.serving()


async def test_streams_hold_admission_slots_so_load_is_bounded(tmp_path):
    s = await start(tmp_path, FakeEngine(), max_concurrency=1, max_queue=0)
    try:
        call = s.stub.StreamingRecognize()
        await call.write(stream_config())
        await wait_until(lambda: s.host.admission.active == 1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.Recognize(pcm_request(tone(0.5)))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await call.done_writing()
        assert [r async for r in call] == []
        await wait_until(lambda: s.host.admission.active == 0)
        assert (await s.stub.Recognize(pcm_request(tone(0.5)))).text == "hello world"
    finally:
        await s.channel.close()
        await s.host.stop(grace=0)


async def test_partials_waiting_for_the_model_are_dropped_when_the_utterance_ends(stt):
    stt.engine.gate = threading.Event()  # best-effort decodes block until released
    call = stt.stub.StreamingRecognize()
    await call.write(stream_config(partials=True))
    for request in chunks(to_s16(np.concatenate([tone(3.0), silence(1.0)])), 640):
        await call.write(request)
    await call.done_writing()
    seen = [await call.read(), await call.read()]
    assert kinds(seen) == ["started0", "ended0"]
    stt.engine.gate.set()
    rest = await read_rest(call)
    assert kinds(rest) == ["final0"]  # the partial finished late and was not sent
    assert sum(1 for _, o in stt.engine.calls if o.best_effort) == 1  # one in flight, no queue


async def test_concurrent_streams_each_get_their_own_finals_in_order(stt):
    one = np.concatenate([tone(0.6), silence(0.6), tone(0.6), silence(0.6)])
    two = np.concatenate([silence(0.3), tone(0.9), silence(0.6)])
    a, b = await asyncio.gather(
        stream(stt.stub, stream_config(), to_s16(one)),
        stream(stt.stub, stream_config(), to_s16(two)),
    )
    assert kinds(a) == ["started0", "ended0", "final0", "started1", "ended1", "final1"]
    assert kinds(b) == ["started0", "ended0", "final0"]


async def test_a_client_leaving_mid_stream_frees_its_slot_and_pending_work(stt):
    stt.engine.gate = threading.Event()  # its partial will still be running
    call = stt.stub.StreamingRecognize()
    await call.write(stream_config(partials=True))
    for request in chunks(to_s16(tone(2.0)), 640):
        await call.write(request)
    assert kinds([await call.read()]) == ["started0"]
    await wait_until(lambda: stt.host.service.core.scheduler.busy == 1)
    call.cancel()
    await wait_until(lambda: stt.host.admission.active == 0)
    stt.engine.gate.set()
    await wait_until(lambda: stt.host.service.core.scheduler.busy == 0)
    assert [o.best_effort for _, o in stt.engine.calls] == [True]  # no final for a gone client
    assert (await stt.stub.Recognize(pcm_request(tone(0.5)))).text == "hello world"
    assert await stt.serving()


async def test_stt_metrics_are_exported(stt):
    import urllib.request

    await stt.stub.Recognize(pcm_request(tone(1.0)))
    await stt.stub.Recognize(pcm_request(silence(1.0)))
    url = f"http://127.0.0.1:{stt.host.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    assert 'milo_stt_decode_seconds_count{kind="recognize"}' in text
    assert 'milo_stt_real_time_factor_bucket{kind="recognize"' in text
    assert "milo_stt_no_speech_clips_total" in text
    assert 'milo_stt_audio_seconds_total{method="Recognize"}' in text
