"""HTTP bridge benchmark: what the bridge adds over gRPC, on the same gateway.

    python tests/bench/bench_http.py [--models models/demo] [--runs 20] [--turns 5]

Starts the whole stack as local processes (like `milo up`, on free ports), then measures,
for the same work:
  1. translate: the translate service directly (gRPC), the gateway's gRPC Translate, and
     POST /v1/translate (keep-alive connection): median and p95 per call;
  2. speech: time to the first audio byte, TTS Synthesize directly against POST /v1/speak;
  3. a text conversation turn (same seed, greedy): gRPC Converse against WS /v1/converse,
     first audio and end of turn.
Prints medians and the bridge's overhead. Goal: the bridge adds < 5 ms to a call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
import websockets

from gateway.up import local_stack
from milo.client import MiloClient
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.models.demo import build_demo

TEXT = "Tell me about the weather on the coast this week."
SPEAK = "Manao ahoana ianao? Faly mahita anao aho."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await call()  # warm-up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def line(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"  {name:<34} median {statistics.median(ms):8.2f} ms   p95 {p95:8.2f} ms"


async def bench_translate(addr: dict[str, str], http: httpx.AsyncClient, runs: int) -> None:
    request = translate_pb2.TranslateRequest(
        texts=[TEXT], source_language="en", target_language="fr"
    )
    async with (
        grpc.aio.insecure_channel(addr["translate"]) as direct_ch,
        grpc.aio.insecure_channel(addr["gateway"]) as gw_ch,
    ):
        direct = translate_pb2_grpc.TranslatorStub(direct_ch)
        gateway = gateway_pb2_grpc.ConversationStub(gw_ch)
        body = {"text": TEXT, "source": "en", "target": "fr"}
        results = {
            "translate service (gRPC)": await timed(lambda: direct.Translate(request), runs),
            "gateway Translate (gRPC)": await timed(
                lambda: gateway.Translate(gw.TranslateRequest(request=request)), runs
            ),
            "POST /v1/translate (HTTP)": await timed(
                lambda: http.post("/v1/translate", json=body), runs
            ),
        }
    print(f"translate, {runs} calls each:")
    for name, ms in results.items():
        print(line(name, ms))
    extra = statistics.median(results["POST /v1/translate (HTTP)"]) - statistics.median(
        results["gateway Translate (gRPC)"]
    )
    print(f"  HTTP bridge over gateway gRPC    {extra:+8.2f} ms per call (goal < 5 ms)")


async def first_tts_audio(tts: tts_pb2_grpc.TtsStub) -> float:
    start = time.perf_counter()
    call = tts.Synthesize(tts_pb2.SynthesizeRequest(text=SPEAK))
    async for reply in call:
        if reply.HasField("audio"):
            call.cancel()
            break
    return (time.perf_counter() - start) * 1000


async def first_http_audio(http: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    async with http.stream("POST", "/v1/speak", json={"text": SPEAK, "format": "pcm"}) as r:
        async for _ in r.aiter_raw():
            break
    return (time.perf_counter() - start) * 1000


async def bench_speech(addr: dict[str, str], http: httpx.AsyncClient, runs: int) -> None:
    async with grpc.aio.insecure_channel(addr["tts"]) as ch:
        tts = tts_pb2_grpc.TtsStub(ch)
        await first_tts_audio(tts)
        await first_http_audio(http)
        direct = [await first_tts_audio(tts) for _ in range(runs)]
        bridged = [await first_http_audio(http) for _ in range(runs)]
    print(f"speech, time to first audio, {runs} calls each:")
    print(line("TTS Synthesize (gRPC)", direct))
    print(line("POST /v1/speak (HTTP, streamed)", bridged))


CONFIG = {
    "user_language": "en",
    "pivot_language": "fr",
    "sampling": {"max_tokens": 60, "temperature": 0.0, "seed": 1},
}


async def grpc_turn(address: str) -> tuple[float, float]:
    config = gw.SessionConfig(
        user_language="en",
        pivot_language="fr",
        sampling=llm_pb2.SamplingOptions(max_tokens=60, temperature=0.0, seed=1),
    )

    async def inputs():
        yield TEXT

    start, first = time.perf_counter(), float("nan")
    async with MiloClient(address) as client:
        async for event in client.converse(inputs(), config, timeout=600):
            if event.kind == "audio" and first != first:
                first = time.perf_counter() - start
    return first * 1000, (time.perf_counter() - start) * 1000


async def ws_turn(url: str) -> tuple[float, float]:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": CONFIG}))
        start, first = time.perf_counter(), float("nan")
        await ws.send(json.dumps({"text": {"text": TEXT}}))
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                if first != first:
                    first = time.perf_counter() - start
                continue
            if json.loads(frame)["event"] == "turn_ended":
                return first * 1000, (time.perf_counter() - start) * 1000


async def bench_turn(addr: dict[str, str], ws_url: str, turns: int) -> None:
    await grpc_turn(addr["gateway"])
    await ws_turn(ws_url)
    grpc_runs = [await grpc_turn(addr["gateway"]) for _ in range(turns)]
    ws_runs = [await ws_turn(ws_url) for _ in range(turns)]
    print(f"text turn (60 tokens, greedy), {turns} turns each, median:")
    for name, runs in (("gRPC Converse", grpc_runs), ("WS /v1/converse", ws_runs)):
        first = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        print(f"  {name:<34} first audio {first:8.1f} ms   end of turn {total:8.1f} ms")


async def measure(args: argparse.Namespace, addr: dict[str, str], http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await bench_translate(addr, http, args.runs)
        await bench_speech(addr, http, args.runs)
    await bench_turn(addr, f"ws://127.0.0.1:{http_port}/v1/converse", args.turns)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--runs", type=int, default=20, help="calls per unary measurement")
    parser.add_argument("--turns", type=int, default=5, help="conversation turns per path")
    args = parser.parse_args()
    if args.models == Path("models/demo"):
        build_demo(args.models)
    http_port = free_port()
    gateway_env = {"MILO_GATEWAY_HTTP_PORT": str(http_port)}
    with local_stack(args.models, gateway_env=gateway_env) as addresses:
        asyncio.run(measure(args, addresses, http_port))


if __name__ == "__main__":
    main()
