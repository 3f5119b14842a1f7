"""Gateway benchmark: its overhead, and time to first audio against time to end of turn.

    python tests/bench/bench_gateway.py [--models models/demo] [--runs 5] [--max-tokens 120]

Starts the whole stack as local processes (like `milo up`, on free ports), then for the
same text turn (same seed, greedy sampling, so the same reply every time):
  1. through the gateway's Converse (pipelined: each sentence is translated and spoken as
     soon as the LLM has written it);
  2. the same service calls made directly by a client, in sequence: translate in, LLM
     stream, then for each sentence translate out and TTS.
Prints the medians and the ratios. Goals: Converse <= 1.10x the direct calls; first audio
<= 0.5x the end of the turn.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import grpc

from gateway.sentences import SentenceCutter
from gateway.up import local_stack
from milo.client import MiloClient
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.models.demo import build_demo

TEXT = "Tell me about the weather on the coast this week."


def sampling(max_tokens: int) -> llm_pb2.SamplingOptions:
    return llm_pb2.SamplingOptions(max_tokens=max_tokens, temperature=0.0, seed=1)


async def through_gateway(address: str, max_tokens: int) -> tuple[float, float, int]:
    """(first audio, end of turn, sentences) in seconds, for one Converse turn."""
    config = gw.SessionConfig(
        user_language="en", pivot_language="fr", sampling=sampling(max_tokens)
    )

    async def inputs():
        yield TEXT

    start, first, sentences = time.perf_counter(), None, 0
    async with MiloClient(address) as client:
        async for event in client.converse(inputs(), config, timeout=600):
            if event.kind == "audio" and first is None:
                first = time.perf_counter() - start
            sentences += event.kind == "reply_sentence"
    return first or float("nan"), time.perf_counter() - start, sentences


async def direct(addresses: dict[str, str], max_tokens: int, max_chars: int) -> float:
    """The same work as one turn, as sequential calls from a client to each service."""
    start = time.perf_counter()
    async with (
        grpc.aio.insecure_channel(addresses["translate"]) as t_ch,
        grpc.aio.insecure_channel(addresses["llm"]) as l_ch,
        grpc.aio.insecure_channel(addresses["tts"]) as s_ch,
    ):
        translate = translate_pb2_grpc.TranslatorStub(t_ch)
        pivot = (
            (
                await translate.Translate(
                    translate_pb2.TranslateRequest(
                        texts=[TEXT], source_language="en", target_language="fr"
                    )
                )
            )
            .translations[0]
            .text
        )
        request = llm_pb2.ChatRequest(
            messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content=pivot)],
            sampling=sampling(max_tokens),
        )
        cutter, sentences = SentenceCutter(max_chars), []
        async for reply in llm_pb2_grpc.LlmStub(l_ch).Chat(request):
            if reply.HasField("delta"):
                sentences += cutter.feed(reply.delta.text)
        sentences += cutter.flush()
        tts = tts_pb2_grpc.TtsStub(s_ch)
        for sentence in sentences:
            text = (
                await translate.Translate(
                    translate_pb2.TranslateRequest(
                        texts=[sentence], source_language="fr", target_language="en"
                    )
                )
            ).translations[0]
            if text.text.strip():
                async for _ in tts.Synthesize(tts_pb2.SynthesizeRequest(text=text.text)):
                    pass
    return time.perf_counter() - start


async def measure(args: argparse.Namespace, addresses: dict[str, str]) -> None:
    gateway = addresses["gateway"]
    await through_gateway(gateway, args.max_tokens)  # warm-up
    await direct(addresses, args.max_tokens, args.max_sentence_chars)
    firsts, turns, directs, sentences = [], [], [], 0
    for _ in range(args.runs):
        first, total, sentences = await through_gateway(gateway, args.max_tokens)
        firsts.append(first)
        turns.append(total)
        directs.append(await direct(addresses, args.max_tokens, args.max_sentence_chars))
    med = statistics.median
    print(f"reply: {sentences} sentences, {args.max_tokens} tokens; {args.runs} runs (median)")
    print(f"  Converse turn (gateway)        {med(turns) * 1000:9.1f} ms")
    print(f"  direct sequential calls        {med(directs) * 1000:9.1f} ms")
    print(f"  gateway / direct               {med(turns) / med(directs):9.2f}x  (goal <= 1.10x)")
    print(f"  first audio                    {med(firsts) * 1000:9.1f} ms")
    print(f"  first audio / end of turn      {med(firsts) / med(turns):9.2f}x  (goal <= 0.50x)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--max-sentence-chars",
        type=int,
        default=60,
        help="the gateway cut (random demo text has few full stops)",
    )
    args = parser.parse_args()
    if args.models == Path("models/demo"):
        build_demo(args.models)
    gateway_env = {"MILO_GATEWAY_MAX_SENTENCE_CHARS": str(args.max_sentence_chars)}
    with local_stack(args.models, gateway_env=gateway_env) as addresses:
        asyncio.run(measure(args, addresses))


if __name__ == "__main__":
    main()
