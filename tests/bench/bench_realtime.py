"""Realtime benchmark: end of speech to the first reply audio, through /v1/realtime (the
official `openai` SDK's realtime client) versus gRPC Converse, on the same stack.

    python tests/bench/bench_realtime.py [--models models/demo] [--rounds 5]

Starts the whole stack as local processes (like `milo up`, on free ports). Each round
streams the same English speech (espeak-ng, 24 kHz s16le) in 20 ms chunks at real-time
pace, then silence, through each front in turn, with the same VAD (the STT defaults) and
partial transcripts on, and times from the last chunk of speech sent to the first reply
audio received. The two fronts alternate, so a busy machine slows both alike. Prints the
medians and their ratio. Goal: Realtime <= 1.05x Converse.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import av
import grpc
import numpy as np
import openai

from gateway.up import free_base_port, local_stack
from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.gateway.v1 import gateway_pb2_grpc
from milo.llm.v1 import llm_pb2
from services.models.demo import build_demo

RATE, CHUNK = 24_000, 960  # 20 ms of 24 kHz s16le
SAY = "Hello. What is the weather like in the capital today?"
MAX_TOKENS = 24


def speech_pcm() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), SAY], check=True)
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            frames = [f for fr in container.decode(audio=0) for f in resampler.resample(fr)]
            frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype("<i2").tobytes()


async def paced(speech: bytes, silence_s: float = 2.5) -> AsyncIterator[tuple[bytes, bool]]:
    """20 ms chunks at real-time pace: (chunk, is the last chunk of speech)."""
    audio = speech + bytes(int(RATE * 2 * silence_s))
    start, last = time.monotonic(), len(speech) - 1
    for n, i in enumerate(range(0, len(audio), CHUNK)):
        await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
        yield audio[i : i + CHUNK], i <= last < i + CHUNK


async def converse_round(address: str, speech: bytes) -> float:
    config = gw.SessionConfig(
        input_format=audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE, channels=1
        ),
        output_sample_rate_hz=RATE,
        sampling=llm_pb2.SamplingOptions(max_tokens=MAX_TOKENS),
    )
    end_of_speech: list[float] = []

    async def requests() -> AsyncIterator[gw.ConverseRequest]:
        yield gw.ConverseRequest(config=config)
        async for chunk, last in paced(speech):
            yield gw.ConverseRequest(audio=chunk)
            if last:
                end_of_speech.append(time.monotonic())

    async with grpc.aio.insecure_channel(address) as channel:
        call = gateway_pb2_grpc.ConversationStub(channel).Converse(requests(), timeout=300)
        async for event in call:
            if event.WhichOneof("event") == "audio" and event.audio.chunk.data:
                now = time.monotonic()
                call.cancel()
                return now - end_of_speech[0]
    raise RuntimeError("Converse ended without reply audio")


async def realtime_round(base_url: str, speech: bytes) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    end_of_speech: list[float] = []
    async with client.realtime.connect(model="milo") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": MAX_TOKENS,
                "audio": {
                    "input": {
                        "transcription": {"model": "whisper-1"},
                        "turn_detection": {"type": "server_vad"},
                    }
                },
            }
        )

        async def send() -> None:
            async for chunk, last in paced(speech):
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                if last:
                    end_of_speech.append(time.monotonic())

        sender = asyncio.create_task(send())
        try:
            async for event in conn:
                if event.type == "response.output_audio.delta":
                    return time.monotonic() - end_of_speech[0]
        finally:
            sender.cancel()
    raise RuntimeError("the realtime session ended without reply audio")


async def measure(rounds: int, address: str, base_url: str) -> None:
    speech = speech_pcm()
    fronts: dict[str, Callable[[], Awaitable[float]]] = {
        "gRPC Converse": lambda: converse_round(address, speech),
        "/v1/realtime": lambda: realtime_round(base_url, speech),
    }
    for run in fronts.values():  # warm-up: models, channels, caches
        await run()
    times: dict[str, list[float]] = {name: [] for name in fronts}
    for _ in range(rounds):
        for name, run in fronts.items():
            times[name].append(await run() * 1000)
    print(f"end of speech -> first reply audio, {rounds} rounds, 20 ms chunks at real time")
    for name, ms in times.items():
        print(
            f"  {name:<14} median {statistics.median(ms):7.0f} ms   "
            f"min {min(ms):7.0f}   max {max(ms):7.0f}"
        )
    ratio = statistics.median(times["/v1/realtime"]) / statistics.median(times["gRPC Converse"])
    print(f"  ratio realtime / converse: {ratio:.3f}x  (goal <= 1.05x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--gateway", help="host:port of a running gateway (default: start the stack)"
    )
    parser.add_argument("--http", help="its HTTP bridge, e.g. http://127.0.0.1:8080")
    args = parser.parse_args()
    if args.gateway and args.http:
        asyncio.run(measure(args.rounds, args.gateway, args.http.rstrip("/") + "/v1"))
        return
    if args.models == Path("models/demo"):
        build_demo(args.models)
    http_port = free_base_port() + 50
    env = {"MILO_GATEWAY_HTTP_PORT": str(http_port)}
    with local_stack(args.models, gateway_env=env) as addr:
        asyncio.run(measure(args.rounds, addr["gateway"], f"http://127.0.0.1:{http_port}/v1"))


if __name__ == "__main__":
    main()
