"""Tier 2: the shared runtime around a small test servicer on a real server, port 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.runtime.server import ServiceHost

sys.path.insert(0, str(Path(__file__).parent))
from procs import wait_until
from toy_service import ToyService, ToySettings

SERVICE = "milo.translate.v1.Translator"
Status = health_pb2.HealthCheckResponse


def settings(**kw) -> ToySettings:
    return ToySettings(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0, **kw)


async def health(channel: grpc.aio.Channel, service: str = SERVICE) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


@pytest.fixture
async def host():
    service = ToyService()
    h = ServiceHost(service, settings(max_concurrency=1, max_queue=1))
    await h.start(load=False)
    service.load_gate.set()
    await h.load()
    yield h
    await h.stop(grace=0)


async def test_health_not_serving_until_loaded_then_serving_then_draining():
    service = ToyService()
    h = ServiceHost(service, settings())
    await h.start(load=False)
    loading = asyncio.create_task(h.load())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") as ch:
        assert await health(ch) == Status.NOT_SERVING
        assert await health(ch, "") == Status.NOT_SERVING
        stub = translate_pb2_grpc.TranslatorStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Translate(translate_pb2.TranslateRequest(texts=["a b"]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in err.value.details()
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == Status.NOT_SERVING
        service.load_gate.set()
        await loading
        assert (await watch.read()).status == Status.SERVING
        stopping = asyncio.create_task(h.stop(grace=1))
        assert (await watch.read()).status == Status.NOT_SERVING
        await stopping
    assert service.closed


async def test_reflection_lists_the_service_and_health(host):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        call = stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        await call.done_writing()
        names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_metrics_served_with_request_counts_by_code(host):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        stub = translate_pb2_grpc.TranslatorStub(ch)
        reply = await stub.Translate(translate_pb2.TranslateRequest(texts=["a b"]))
        assert reply.translations[0].text == "b a"
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Translate(translate_pb2.TranslateRequest())
    url = f"http://127.0.0.1:{host.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    assert 'milo_requests_total{code="OK",method="Translate",service="toy"}' in text
    assert 'milo_requests_total{code="INVALID_ARGUMENT",method="Translate",service="toy"}' in text
    assert 'milo_serving{service="toy"} 1.0' in text
    assert 'milo_model_load_seconds{service="toy"}' in text
    assert "milo_queue_depth" in text and "milo_requests_in_flight" in text


async def test_typed_error_keeps_message_and_unknown_error_is_generic(host):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        stub = translate_pb2_grpc.TranslatorStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Translate(translate_pb2.TranslateRequest())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "texts is empty" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Translate(translate_pb2.TranslateRequest(texts=["crash"]))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in err.value.details()
        assert await health(ch) == Status.SERVING


async def test_api_key_required_when_set_and_compared_exactly():
    service = ToyService()
    service.load_gate.set()
    h = ServiceHost(service, settings(api_key="s3cret"))
    await h.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") as ch:
            stub = translate_pb2_grpc.TranslatorStub(ch)
            req = translate_pb2.TranslateRequest(texts=["x y"])
            for metadata in [(), (("x-api-key", "wrong"),), (("authorization", "Bearer s3cre"),)]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Translate(req, metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = await stub.Translate(req, metadata=(("authorization", "Bearer s3cret"),))
            assert ok.translations[0].text == "y x"
            ok = await stub.Translate(req, metadata=(("x-api-key", "s3cret"),))
            assert ok.translations[0].text == "y x"
            assert await health(ch) == Status.SERVING  # health needs no key
    finally:
        await h.stop(grace=0)


async def test_over_admission_gets_resource_exhausted_with_retry_hint(host):
    service: ToyService = host.service
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        stub = translate_pb2_grpc.TranslatorStub(ch)
        hold, q = (
            translate_pb2.TranslateRequest(texts=["hold"]),
            translate_pb2.TranslateRequest(texts=["q r"]),
        )
        running = asyncio.ensure_future(stub.Translate(hold))
        await wait_until(lambda: service.entered == 1)
        queued = asyncio.ensure_future(stub.Translate(q))
        await wait_until(lambda: host.admission.queued == 1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Translate(translate_pb2.TranslateRequest(texts=["late"]))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in err.value.details()
        trailers = dict(err.value.trailing_metadata() or ())
        assert int(trailers["grpc-retry-pushback-ms"]) >= 100
        service.release.set()
        assert (await running).translations[0].text == "hold"
        assert (await queued).translations[0].text == "r q"  # nothing accepted is lost
        assert await stub.Describe(translate_pb2.DescribeRequest())  # exempt from admission


def test_sigterm_drains_in_flight_call_and_goes_not_serving(tmp_path):
    """The real entry point in its own process: SIGTERM -> NOT_SERVING -> drain -> exit 0."""
    env = {
        **os.environ,
        "MILO_TOY_PORT": "0",
        "MILO_TOY_HOLD_S": "1.0",
        "MILO_TOY_HOST": "127.0.0.1",
        "MILO_TOY_METRICS_PORT": "0",
    }
    script = Path(__file__).parent / "toy_service.py"
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        port = _wait_for_port(proc)
        asyncio.run(_drain_check(proc, port))
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def _wait_for_port(proc: subprocess.Popen) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return int(line.split("(")[0].rsplit(":", 1)[1])
    raise AssertionError("service never said where it listens")


async def _drain_check(proc: subprocess.Popen, port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        while (await watch.read()).status != Status.SERVING:
            pass
        stub = translate_pb2_grpc.TranslatorStub(ch)
        call = asyncio.ensure_future(stub.Translate(translate_pb2.TranslateRequest(texts=["u v"])))
        await asyncio.sleep(0.2)  # let the call be accepted before the signal
        proc.send_signal(signal.SIGTERM)
        assert (await watch.read()).status == Status.NOT_SERVING
        assert (await call).translations[0].text == "v u"  # drained, not dropped


def test_sigterm_while_the_model_loads_exits_without_waiting_for_the_load():
    env = {
        **os.environ,
        "MILO_TOY_PORT": "0",
        "MILO_TOY_LOAD_S": "120",
        "MILO_TOY_HOST": "127.0.0.1",
        "MILO_TOY_METRICS_PORT": "0",
    }
    script = Path(__file__).parent / "toy_service.py"
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_port(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # the load would take 120 s
    finally:
        proc.kill()


async def test_bytes_that_are_not_the_request_message_get_invalid_argument(host):
    """grpc.aio parses a request before the handler; undecodable bytes used to answer
    UNKNOWN "Unexpected <class '...DecodeError'>" (unary) or INTERNAL (streams)."""
    garbage = b"\xff\xff\xff\xff\x0f"  # a tag past the last field number, then nothing
    bad_utf8 = b"\x12\x01\xff"  # source_language (a string) holding the byte 0xff
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
        paths = ["/milo.translate.v1.Translator/Translate", "/grpc.health.v1.Health/Check"]
        for path, data in [(paths[0], garbage), (paths[0], bad_utf8), (paths[1], garbage)]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ch.unary_unary(path)(data, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, data)
            assert "could not be parsed" in err.value.details()
            assert "class" not in err.value.details() and "Error" not in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in ch.unary_stream("/grpc.health.v1.Health/Watch")(garbage, timeout=10):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await health(ch) == Status.SERVING
