"""Benchmark the TTS service: time to the first audio chunk of a streamed five-sentence
paragraph, against the time to synthesize the whole paragraph in one VITS pass; plus the
real-time factor (processing time / audio duration) of both.

Streaming goes through the real service (ServiceHost on port 0, a gRPC client in this
process); the one-pass figure calls the same engine directly on the same normalized text.
Goal: first chunk <= 0.3x the one-pass time.

    python tests/bench/bench_tts.py                      # random-weight VITS of MMS-TTS's shape
    python tests/bench/bench_tts.py --model demo         # the tiny demo VITS
    python tests/bench/bench_tts.py --model-dir PATH     # any transformers VITS folder

`--concurrency 8` (run instead of the above) measures batched synthesis: 8 requests of
two sentences each, sent at once, against the same 8 one at a time, alternately
(`--runs` rounds): audio chunks per second each way and their ratio (goal: report it); and
a lone request through the batcher against the same request with no batcher (each
segment a plain engine call, as before batching; goal: no slower; medians of `--lone-runs`
of each, alternating which goes first). In this process, at
the service's core (`TtsCore.stream`), no gRPC.

    python tests/bench/bench_tts.py --concurrency 8 --runs 2

The MMS-shape model (the facebook/mms-tts-* config: hidden 192, 6 encoder layers, 4 prior
flows, HiFi-GAN 512 channels x [8, 8, 2, 2]) has random weights, so it costs what the real
voice costs per frame, but its predicted durations are random: compare the audio seconds
per character it prints with real speech (about 0.06-0.08 s per character).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PARAGRAPH = (
    "Manao ahoana tompoko, tongasoa eto amin'ny Milo. "
    "Androany dia ny 26 jona, andro fetin'ny firenena malagasy. "
    "Ny toetr'andro any Antananarivo dia mafana, 25° amin'ny 14:30. "
    "Aza adino ny mitondra rano sy satroka raha handeha hitsangatsangana ianao. "
    "Misaotra betsaka ary mirary andro mahafinaritra ho anao."
)
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "milo" / "bench"


@dataclass
class Run:
    first_chunk_s: float
    stream_total_s: float
    stream_audio_s: float
    whole_s: float
    whole_audio_s: float


def build_mms_shape(demo_tts: Path, dest: Path) -> Path:
    """A random-weight VitsModel with facebook/mms-tts's config (transformers' VitsConfig
    defaults are that config) and the demo's Malagasy tokenizer. Built once."""
    if (dest / "model.safetensors").is_file():
        return dest
    import json

    import torch
    import transformers

    vocab = json.loads((demo_tts / "vocab.json").read_text("utf-8"))
    torch.manual_seed(0)
    config = transformers.VitsConfig(vocab_size=len(vocab), sampling_rate=16000)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    transformers.VitsModel(config).save_pretrained(str(partial))
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (demo_tts / name).is_file():
            shutil.copy(demo_tts / name, partial / name)
    partial.rename(dest)
    return dest


def model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from services.models.demo import build_demo

    build_demo(args.demo_dir, components=["tts"])
    if args.model == "demo":
        return Path(args.demo_dir) / "tts"
    return build_mms_shape(Path(args.demo_dir) / "tts", args.cache / "vits-mms-shape")


async def one_run(stub: Any, engine: Any, whole_text: str, seed: int) -> Run:
    from milo.tts.v1 import tts_pb2

    start = time.perf_counter()
    first = 0.0
    async for reply in stub.Synthesize(tts_pb2.SynthesizeRequest(text=PARAGRAPH, seed=seed)):
        if reply.HasField("audio") and not first:
            first = time.perf_counter() - start
        if reply.HasField("done"):
            audio_s = reply.done.audio_duration_ms / 1000
    total = time.perf_counter() - start
    start = time.perf_counter()
    samples = await asyncio.to_thread(engine.synthesize, whole_text, engine.voices[0], 1.0, seed)
    whole = time.perf_counter() - start
    return Run(first, total, audio_s, whole, len(samples) / engine.sample_rate)


async def bench(folder: Path, runs: int, threads: int, device: str) -> tuple[list[Run], Any]:
    import grpc

    from milo.tts.v1 import tts_pb2_grpc
    from services.runtime.server import ServiceHost
    from services.tts.config import TtsSettings
    from services.tts.service import make_service
    from services.tts.text import plan_text

    settings = TtsSettings(
        model_dir=folder,
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        threads=threads,
        device=device,
    )  # type: ignore[call-arg,arg-type]
    service = make_service(settings)
    host = ServiceHost(service, settings)
    await host.start()
    engine = service.core.engine
    plan = plan_text(PARAGRAPH, engine.vocab, settings.max_segment_chars)
    whole_text = " ".join(s.normalized for s in plan.sentences)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            stub = tts_pb2_grpc.TtsStub(channel)
            await one_run(stub, engine, whole_text, 0)  # warm-up
            results = [await one_run(stub, engine, whole_text, seed) for seed in range(runs)]
    finally:
        await host.stop(grace=0)
    return results, (engine, plan, whole_text)


def report(folder: Path, results: list[Run], info: Any) -> None:
    engine, plan, whole_text = info
    med = {f: statistics.median(getattr(r, f) for r in results) for f in Run.__dataclass_fields__}
    print(f"model      {engine.model_id} ({folder})")
    print(
        f"device     {engine.device}, torch threads {_threads()}, load avg "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"paragraph  {len(plan.sentences)} sentences, {len(PARAGRAPH)} characters written, "
        f"{len(whole_text)} read; first sentence {len(plan.sentences[0].normalized)} read"
    )
    print(f"runs       {len(results)} (median shown, after one warm-up)")
    print()
    print(f"first audio chunk (streamed, via gRPC)   {med['first_chunk_s'] * 1000:8.1f} ms")
    print(f"whole paragraph in one pass              {med['whole_s'] * 1000:8.1f} ms")
    ratio = med["first_chunk_s"] / med["whole_s"]
    verdict = "meets" if ratio <= 0.3 else "misses"
    print(f"first chunk / one pass                   {ratio:8.2f}x   ({verdict} the 0.3x goal)")
    print(f"streamed total                           {med['stream_total_s'] * 1000:8.1f} ms")
    print()
    rtf_stream = med["stream_total_s"] / med["stream_audio_s"]
    rtf_whole = med["whole_s"] / med["whole_audio_s"]
    print(
        f"real-time factor, streamed               {rtf_stream:8.3f}   "
        f"({med['stream_audio_s']:.2f} s of audio, with pauses)"
    )
    print(
        f"real-time factor, one pass               {rtf_whole:8.3f}   "
        f"({med['whole_audio_s']:.2f} s of audio)"
    )
    per_char = med["whole_audio_s"] / len(whole_text)
    print(f"audio per character read                 {per_char:8.3f} s")


CONCURRENT_TEXTS = [
    "Manao ahoana tompoko. Tongasoa eto amin'ny Milo.",
    "Misaotra betsaka. Veloma e, mandra-pihaona.",
    "Ny toetr'andro dia mafana androany. Aza adino ny rano.",
    "Eny, azo atao izany. Andao ho any an-tsena.",
]


async def _chunks(core: Any, text: str, seed: int, batched: bool) -> int:
    from services.tts.audio import Chunk
    from services.tts.core import Options, stream

    job = core.prepare(Options(text=text, seed=seed))
    events = core.stream(job) if batched else stream(job, core.engine, core.settings, None)
    return sum([isinstance(e, Chunk) async for e in events])


async def concurrency_bench(
    folder: Path, n: int, runs: int, threads: int, device: str, lone_runs: int = 6
) -> dict[str, Any]:
    from services.tts.config import TtsSettings
    from services.tts.core import TtsCore
    from services.tts.vits_engine import VitsEngine

    settings = TtsSettings(model_dir=folder, threads=threads, device=device, max_batch=n)  # type: ignore[call-arg,arg-type]
    core = TtsCore(VitsEngine(folder, threads=threads, device=device), settings)
    core.load()
    texts = [CONCURRENT_TEXTS[i % len(CONCURRENT_TEXTS)] for i in range(n)]
    await _chunks(core, texts[0], 0, True)  # warm-up
    rows = []
    for _ in range(runs):
        start = time.perf_counter()
        alone = [await _chunks(core, t, i, True) for i, t in enumerate(texts)]
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        together = await asyncio.gather(*(_chunks(core, t, i, True) for i, t in enumerate(texts)))
        concurrent = time.perf_counter() - start
        rows.append(
            {
                "chunks": sum(alone),
                "same_chunks": alone == list(together),
                "one_by_one_s": one_by_one,
                "concurrent_s": concurrent,
            }
        )
    # A lone request through the batcher against plain engine calls, paired and alternating
    # which goes first, so that a shared machine's load hits both alike.
    lone: dict[str, list[float]] = {"lone_batcher_s": [], "lone_plain_s": []}
    for i in range(lone_runs):
        for batched in (True, False) if i % 2 == 0 else (False, True):
            start = time.perf_counter()
            await _chunks(core, texts[0], 0, batched)
            lone["lone_batcher_s" if batched else "lone_plain_s"].append(
                time.perf_counter() - start
            )
    core.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k.endswith("_s")}
    med.update({k: statistics.median(v) for k, v in lone.items()})
    chunks = rows[0]["chunks"]
    return {
        "model": core.engine.model_id,
        "requests": n,
        "chunks": chunks,
        **med,
        "same_chunks": all(r["same_chunks"] for r in rows),
        "runs": len(rows),
        "lone_runs": lone_runs,
        "chunks_per_s_one_by_one": chunks / med["one_by_one_s"],
        "chunks_per_s_concurrent": chunks / med["concurrent_s"],
        "ratio": med["one_by_one_s"] / med["concurrent_s"],
        "lone_ratio": med["lone_batcher_s"] / med["lone_plain_s"],
    }


def report_concurrency(folder: Path, r: dict[str, Any]) -> None:
    print(f"model      {r['model']} ({folder})")
    print(
        f"device     torch threads {_threads()}, load avg {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs; median of {r['runs']} rounds"
    )
    print(
        f"{r['requests']} requests one at a time    {r['one_by_one_s']:8.2f} s  "
        f"{r['chunks_per_s_one_by_one']:7.1f} chunks/s ({r['chunks']} chunks)"
    )
    print(
        f"{r['requests']} requests at once          {r['concurrent_s']:8.2f} s  "
        f"{r['chunks_per_s_concurrent']:7.1f} chunks/s (same chunk counts: "
        f"{r['same_chunks']})"
    )
    print(f"chunks/s ratio, {r['requests']} at once / one at a time: {r['ratio']:.2f}x")
    verdict = "no slower" if r["lone_ratio"] <= 1.05 else "SLOWER"
    print(
        f"lone request: through the batcher {r['lone_batcher_s'] * 1000:.0f} ms, plain "
        f"engine calls {r['lone_plain_s'] * 1000:.0f} ms: {r['lone_ratio']:.3f}x ({verdict}; "
        f"medians of {r['lone_runs']} each, alternating)"
    )


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        choices=["mms-shape", "demo"],
        default="mms-shape",
        help="which random-weight VITS to build and time (default mms-shape)",
    )
    parser.add_argument("--model-dir", help="time this VITS folder instead")
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=ROOT / "models" / "demo",
        help="demo model set (built if missing; its tokenizer is reused)",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the MMS-shape model is built once"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="batched synthesis: this many requests at once vs one at a time",
    )
    parser.add_argument(
        "--lone-runs",
        type=int,
        default=6,
        help="with --concurrency: lone requests each way, batcher and plain, alternating",
    )
    args = parser.parse_args(argv)
    folder = model_dir(args)
    if args.concurrency:
        result = asyncio.run(
            concurrency_bench(
                folder, args.concurrency, args.runs, args.threads, args.device, args.lone_runs
            )
        )
        report_concurrency(folder, result)
        return 0
    results, info = asyncio.run(bench(folder, args.runs, args.threads, args.device))
    report(folder, results, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
