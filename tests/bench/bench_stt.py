"""Benchmark the STT service against faster-whisper called in-process.

    python tests/bench/bench_stt.py [--model-dir models/demo/stt] [--runs 5]

1. Recognize overhead: the same espeak-ng clips (WAV files) go through the service's
   Recognize (a separate process, over gRPC on loopback) and through
   `WhisperModel.transcribe(path)` in this process, with the same decoding options
   (services.stt.whisper_engine.transcribe_kwargs), alternately, `--runs` times each.
   Printed: the median wall time per clip for each, their ratio (goal: at most 1.10),
   the real-time factor (processing time / audio duration), and the service's non-model
   cost: a Recognize of equally long silence (decoding, VAD, gRPC; the VAD gate skips the
   model), which stays readable when a busy machine makes the model times noisy.
2. Streaming latency: each clip, between 0.5 s and 1.5 s of silence, is streamed in 20 ms
   chunks at real-time pace; printed: from the moment the last chunk holding speech was
   sent to the final result's arrival, median and max over clips and runs. It includes
   the endpointer's silence wait (`--min-silence-ms`, the service default 400).

3. Batched finals (`--batching`, run instead of 1 and 2): `--streams` utterances (the
   clips, cycled) decoded as the finals of that many streams ending together (one
   batched model call through the service's scheduler, in this process) against the same
   finals one at a time, alternately, `--batch-rounds` times; printed: finals per second
   each way and their ratio, and a lone final through the batching scheduler against
   `WhisperEngine.transcribe` run unbatched on the same decode thread, as before batching
   (goal: no slower; the median of `--lone-runs` of each, alternating which goes first).
   `--batch-model small-shape` (default) builds once a random-weight Whisper of
   whisper-small.en's shape (768 wide, 12+12 layers, int8), whose decoding is capped at
   `--max-tokens` tokens and kept on its first try (random weights never stop nor pass the
   fallback checks, so this measures encoder + a fixed decode, no word timings);
   `--batch-model demo` uses
   `--model-dir` (real tiny.en weights, real decoding, word timings).

    python tests/bench/bench_stt.py --batching --streams 8 --batch-rounds 2

Needs espeak-ng. Both sides use the same device, compute type and CPU threads.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SENTENCES = [
    "Please turn on the lights in the kitchen.",
    "What is the weather like today?",
    "My name is John and I live in London.",
    "Thank you very much for your help.",
    "The train leaves the station at nine in the morning and arrives in the city before noon.",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "demo" / "stt")
    p.add_argument("--runs", type=int, default=5, help="runs per clip and side (>= 5)")
    p.add_argument("--stream-runs", type=int, default=2, help="streaming passes over the clips")
    p.add_argument("--language", default="en")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--compute-type", default="auto")
    p.add_argument("--cpu-threads", type=int, default=0, help="0: CTranslate2's default")
    p.add_argument("--min-silence-ms", type=int, default=400, help="endpointing silence")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--batching", action="store_true", help="only the batched-finals figures")
    p.add_argument("--batch-model", choices=["small-shape", "demo"], default="small-shape")
    p.add_argument("--streams", type=int, default=8, help="streams ending together")
    p.add_argument("--batch-rounds", type=int, default=2, help="alternations of both ways")
    p.add_argument("--max-tokens", type=int, default=32, help="small-shape: decode cap")
    p.add_argument(
        "--lone-runs", type=int, default=6, help="lone finals each way (alternating order)"
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "milo" / "bench",
        help="where the small-shape model is built once",
    )
    args = p.parse_args(argv)
    if args.runs < 5 and not args.batching:
        p.error("--runs must be at least 5 (the figures are medians)")
    return args


def make_clips(folder: Path) -> list[tuple[Path, float]]:
    clips = []
    for i, text in enumerate(SENTENCES):
        path = folder / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as w:
            clips.append((path, w.getnframes() / w.getframerate()))
    return clips


def in_process_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from faster_whisper import WhisperModel

    from services.stt.engine import DecodeOptions
    from services.stt.whisper_engine import WhisperConfig, resolve_device, transcribe_kwargs

    config = WhisperConfig(
        args.model_dir,
        "bench",
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
    )
    model = WhisperModel(
        str(args.model_dir),
        device=resolve_device(args.device),
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        local_files_only=True,
    )
    kwargs = transcribe_kwargs(
        config, DecodeOptions(language=args.language, beam_size=args.beam_size)
    )
    return model, kwargs


def run_in_process(model: Any, kwargs: dict[str, Any], path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    segments, _ = model.transcribe(str(path), **kwargs)
    text = " ".join(s.text.strip() for s in segments)
    return time.perf_counter() - start, text


def run_service(stub: Any, path: Path, language: str) -> tuple[float, float, str]:
    from milo.stt.v1 import stt_pb2

    request = stt_pb2.RecognizeRequest(
        audio=path.read_bytes(), config=stt_pb2.RecognitionConfig(language=language)
    )
    start = time.perf_counter()
    reply = stub.Recognize(request, timeout=300)
    return time.perf_counter() - start, reply.processing_ms / 1000, reply.text


def silence_cost(stub: Any, seconds: float, runs: int) -> float:
    """Median wall time of a Recognize of `seconds` of silence as a WAV file: decoding,
    the VAD pass and gRPC, all the service adds to the model, which the VAD gate skips."""
    import io

    from milo.stt.v1 import stt_pb2

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22_050)
        w.writeframes(bytes(int(seconds * 22_050) * 2))
    request = stt_pb2.RecognizeRequest(audio=buffer.getvalue())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        reply = stub.Recognize(request, timeout=60)
        times.append(time.perf_counter() - start)
        assert reply.text == "", "silence should give no text"
    return statistics.median(times)


def recognize_bench(
    args: argparse.Namespace, stub: Any, clips: list[tuple[Path, float]]
) -> dict[str, Any]:
    model, kwargs = in_process_model(args)
    for path, _ in clips:  # warm both sides once per clip
        run_in_process(model, kwargs, path)
        run_service(stub, path, args.language)
    local: dict[Path, list[float]] = {p: [] for p, _ in clips}
    remote: dict[Path, list[float]] = {p: [] for p, _ in clips}
    processing: dict[Path, list[float]] = {p: [] for p, _ in clips}
    for _ in range(args.runs):
        for path, _ in clips:  # alternate, so load on the machine hits both alike
            local[path].append(run_in_process(model, kwargs, path)[0])
            wall, took, _ = run_service(stub, path, args.language)
            remote[path].append(wall)
            processing[path].append(took)
    rows = []
    for path, seconds in clips:
        lm, rm = statistics.median(local[path]), statistics.median(remote[path])
        rows.append(
            {
                "clip": path.name,
                "audio_s": round(seconds, 3),
                "in_process_s": lm,
                "service_s": rm,
                "ratio": rm / lm,
                "rtf": statistics.median(processing[path]) / seconds,
                "non_model_s": silence_cost(stub, seconds, args.runs),
            }
        )
    total_local = sum(r["in_process_s"] for r in rows)
    total_remote = sum(r["service_s"] for r in rows)
    return {
        "clips": rows,
        "in_process_total_s": total_local,
        "service_total_s": total_remote,
        "ratio": total_remote / total_local,
        "rtf": sum(r["rtf"] * r["audio_s"] for r in rows) / sum(r["audio_s"] for r in rows),
    }


def speech_end(path: Path) -> tuple[bytes, float]:
    """16 kHz s16le mono of the clip, and where its speech ends (last sample above -40 dB)."""
    raw = subprocess.run(
        [
            "sox",
            str(path),
            "-t",
            "raw",
            "-r",
            "16000",
            "-c",
            "1",
            "-e",
            "signed",
            "-b",
            "16",
            "-L",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return raw, (int(loud[-1]) + 1 if loud.size else len(samples)) / 16_000


async def stream_once(address: str, path: Path, args: argparse.Namespace) -> dict[str, float]:
    import grpc

    from milo.audio.v1 import audio_pb2
    from milo.stt.v1 import stt_pb2, stt_pb2_grpc

    speech, end_s = speech_end(path)
    audio = bytes(16_000) + speech + bytes(48_000)  # 0.5 s before, 1.5 s after
    end_byte = 16_000 + int(end_s * 16_000) * 2
    config = stt_pb2.StreamingConfig(
        format=audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16_000, channels=1
        ),
        recognition=stt_pb2.RecognitionConfig(language=args.language),
        vad=stt_pb2.VadConfig(min_silence_ms=args.min_silence_ms),
        partial_results=True,
    )
    marks: dict[str, float] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        call = stt_pb2_grpc.SttStub(channel).StreamingRecognize()

        async def send() -> None:
            await call.write(stt_pb2.StreamingRecognizeRequest(config=config))
            start = time.perf_counter()
            for i, offset in enumerate(range(0, len(audio), 640)):
                await asyncio.sleep(max(0.0, start + i * 0.02 - time.perf_counter()))
                await call.write(
                    stt_pb2.StreamingRecognizeRequest(audio=audio[offset : offset + 640])
                )
                if offset <= end_byte < offset + 640:
                    marks["speech_sent"] = time.perf_counter()
            await call.done_writing()

        sender = asyncio.create_task(send())
        async for reply in call:
            if reply.WhichOneof("event") == "result" and reply.result.is_final:
                marks.setdefault("final", time.perf_counter())
                marks.setdefault("processing", reply.result.processing_ms / 1000)
            elif reply.WhichOneof("event") == "speech_ended":
                marks.setdefault("ended", time.perf_counter())
        await sender
    return {
        "latency_s": marks["final"] - marks["speech_sent"],
        "endpoint_s": marks["ended"] - marks["speech_sent"],
        "final_decode_s": marks["processing"],
    }


def streaming_bench(
    args: argparse.Namespace, address: str, clips: list[tuple[Path, float]]
) -> dict[str, Any]:
    runs = [
        asyncio.run(stream_once(address, path, args))
        for _ in range(args.stream_runs)
        for path, _ in clips
    ]

    def stat(key: str) -> dict[str, float]:
        values = [r[key] for r in runs]
        return {"median": statistics.median(values), "max": max(values)}

    return {
        "streams": len(runs),
        "min_silence_ms": args.min_silence_ms,
        "end_of_speech_to_final_s": stat("latency_s"),
        "end_of_speech_to_speech_ended_s": stat("endpoint_s"),
        "final_decode_s": stat("final_decode_s"),
    }


def report(
    recognize: dict[str, Any], streaming: dict[str, Any], args: argparse.Namespace, describe: Any
) -> None:
    print(
        f"model {describe.model_id} on {describe.device} ({describe.compute_type}), "
        f"beam {args.beam_size}, cpu_threads {args.cpu_threads or 'auto'}, "
        f"{os.cpu_count()} CPUs, median of {args.runs} runs"
    )
    print(
        f"{'clip':<10}{'audio s':>9}{'in-process s':>14}{'service s':>11}{'ratio':>8}"
        f"{'RTF':>7}{'non-model ms':>14}"
    )
    for r in recognize["clips"]:
        print(
            f"{r['clip']:<10}{r['audio_s']:>9.2f}{r['in_process_s']:>14.3f}"
            f"{r['service_s']:>11.3f}{r['ratio']:>8.3f}{r['rtf']:>7.3f}"
            f"{r['non_model_s'] * 1000:>14.1f}"
        )
    non_model = sum(r["non_model_s"] for r in recognize["clips"])
    print(
        f"non-model service cost (Recognize of equally long silence: WAV decoding, VAD, "
        f"gRPC; the VAD gate skips the model): {non_model * 1000:.1f} ms in all, "
        f"{100 * non_model / recognize['in_process_total_s']:.1f}% of the in-process time"
    )
    verdict = "meets" if recognize["ratio"] <= 1.10 else "MISSES"
    print(
        f"Recognize / in-process wall time: {recognize['ratio']:.3f}x "
        f"({recognize['service_total_s']:.3f} s vs {recognize['in_process_total_s']:.3f} s;"
        f" {verdict} the 1.10x goal); real-time factor {recognize['rtf']:.3f}"
    )
    s = streaming
    final, ended = s["end_of_speech_to_final_s"], s["end_of_speech_to_speech_ended_s"]
    print(
        f"streaming, {s['streams']} streams at real-time pace, min_silence "
        f"{s['min_silence_ms']} ms: end of speech -> final result median "
        f"{final['median'] * 1000:.0f} ms (max {final['max'] * 1000:.0f}); of which end of "
        f"speech -> speech_ended {ended['median'] * 1000:.0f} ms and final decode "
        f"{s['final_decode_s']['median'] * 1000:.0f} ms (medians)"
    )
    if args.json:
        print(json.dumps({"recognize": recognize, "streaming": streaming}, indent=2))


def build_small_shape(demo_stt: Path, cache: Path) -> Path:
    """A random-weight Whisper of openai/whisper-small.en's shape, with the demo's tokenizer,
    converted to CTranslate2 int8 (once, into `cache`)."""
    dest = cache / "whisper-small-shape-int8"
    if (dest / "model.bin").is_file():
        return dest
    import shutil

    import torch
    import transformers

    from services.models.convert import convert_whisper

    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=768,
        encoder_layers=12,
        decoder_layers=12,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
        decoder_start_token_id=50257,
        begin_suppress_tokens=[220, 50256],
    )
    with tempfile.TemporaryDirectory(prefix="milo-whisper-small-") as tmp:
        transformers.WhisperForConditionalGeneration(config).save_pretrained(tmp)
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        convert_whisper(Path(tmp), partial, "int8", extra_dir=demo_stt)
        partial.rename(dest)
    return dest


async def batching_bench(
    args: argparse.Namespace, clips: list[tuple[Path, float]]
) -> dict[str, Any]:
    from prometheus_client import REGISTRY

    from services.stt.batching import BatchPolicy
    from services.stt.core import Defaults, RequestOptions, SttCore
    from services.stt.vad import SileroDetector
    from services.stt.whisper_engine import WhisperConfig, WhisperEngine

    shape = args.batch_model == "small-shape"
    folder = build_small_shape(args.model_dir, args.cache) if shape else args.model_dir
    keep_first_try = {"log_prob_threshold": -1e9, "compression_ratio_threshold": 1e9}
    config = WhisperConfig(
        folder,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        **(keep_first_try if shape else {}),
    )
    core = SttCore(
        WhisperEngine(config),
        SileroDetector,
        Defaults(language=args.language, beam_size=args.beam_size),
        batching=BatchPolicy(max_batch=args.streams, window_s=0.005),
    )
    core._warm_up = lambda: None  # type: ignore[method-assign]  # warmed below, capped
    core.load()
    engine: Any = core.engine
    if shape:
        engine.model.max_length = args.max_tokens
    options = core.decode_options(RequestOptions(word_timestamps=not shape))
    audio = [
        np.frombuffer(speech_end(path)[0], "<i2").astype(np.float32) / 32768 for path, _ in clips
    ]
    finals = [audio[i % len(audio)] for i in range(args.streams)]
    await core.decode(finals[0], options, "final")  # warm-up
    alone_before = REGISTRY.get_sample_value("milo_stt_batch_decoded_alone_total") or 0.0
    rows = []
    for _ in range(args.batch_rounds):
        start = time.perf_counter()
        one_by_one = [(await core.decode(a, options, "final")).text for a in finals]
        sequential = time.perf_counter() - start
        core.callers = args.streams  # the streams are open: their finals share a call
        start = time.perf_counter()
        together = await asyncio.gather(*(core.decode(a, options, "final") for a in finals))
        batched = time.perf_counter() - start
        core.callers = 0
        rows.append(
            {
                "one_by_one_s": sequential,
                "together_s": batched,
                "same_text": one_by_one == [t.text for t in together],
            }
        )
    # A lone final through the batching scheduler against the same decode without batching
    # (`DecodeScheduler.run` on the same decode thread, as finals were decoded before
    # batching), paired and alternating which goes first, so that a shared machine's load
    # hits both alike.
    lone: dict[str, list[float]] = {"lone_direct_s": [], "lone_scheduled_s": []}
    core.callers = 1  # one open stream, whose own final this is: no company to wait for
    for i in range(args.lone_runs):
        for way in ("direct", "scheduled") if i % 2 == 0 else ("scheduled", "direct"):
            start = time.perf_counter()
            if way == "direct":  # as a final was decoded before batching: same pool thread
                await core.scheduler.run(functools.partial(engine.transcribe, finals[0], options))
            else:
                await core.decode(finals[0], options, "final")
            lone[f"lone_{way}_s"].append(time.perf_counter() - start)
    core.callers = 0
    core.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "same_text"}
    med.update({k: statistics.median(v) for k, v in lone.items()})
    n = args.streams
    return {
        "model": engine.model_id,
        "shape": shape,
        "streams": n,
        "rounds": rows,
        "lone": lone,
        **med,
        "finals_per_s_one_by_one": n / med["one_by_one_s"],
        "finals_per_s_together": n / med["together_s"],
        "ratio": med["one_by_one_s"] / med["together_s"],
        "lone_ratio": med["lone_scheduled_s"] / med["lone_direct_s"],
        "same_text": all(r["same_text"] for r in rows),
        "decoded_alone": (REGISTRY.get_sample_value("milo_stt_batch_decoded_alone_total") or 0.0)
        - alone_before,
    }


def report_batching(b: dict[str, Any], args: argparse.Namespace) -> None:
    kind = (
        f"random weights of whisper-small.en's shape, decode capped at {args.max_tokens} "
        "tokens, no word timings"
        if b["shape"]
        else "real weights, word timings"
    )
    print(
        f"batched finals: {b['model']} ({kind}), beam {args.beam_size}, {args.device}, "
        f"cpu_threads {args.cpu_threads or 'auto'}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; median of {len(b['rounds'])} rounds"
    )
    print(
        f"{b['streams']} finals one at a time   {b['one_by_one_s']:8.2f} s   "
        f"{b['finals_per_s_one_by_one']:.3f} finals/s"
    )
    print(
        f"{b['streams']} finals together (1 batch) {b['together_s']:8.2f} s   "
        f"{b['finals_per_s_together']:.3f} finals/s"
    )
    print(
        f"throughput ratio, {b['streams']} streams together / one at a time: "
        f"{b['ratio']:.2f}x (same text both ways: {b['same_text']}; items decoded again "
        f"alone: {b['decoded_alone']:.0f})"
    )
    verdict = "no slower" if b["lone_ratio"] <= 1.05 else "SLOWER"
    print(
        f"lone final: through the batching scheduler {b['lone_scheduled_s']:.3f} s, "
        f"unbatched (DecodeScheduler.run) {b['lone_direct_s']:.3f} s: "
        f"{b['lone_ratio']:.3f}x ({verdict}; medians of {args.lone_runs} each, alternating)"
    )
    if args.json:
        print(json.dumps(b, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batching:
        with tempfile.TemporaryDirectory(prefix="milo-bench-stt-") as tmp:
            clips = make_clips(Path(tmp))
            report_batching(asyncio.run(batching_bench(args, clips)), args)
        return 0
    import grpc
    from procs import ServiceProcess

    from milo.stt.v1 import stt_pb2, stt_pb2_grpc

    env = {
        "MILO_STT_MODEL_DIR": str(args.model_dir),
        "MILO_STT_LANGUAGE": args.language,
        "MILO_STT_DEVICE": args.device,
        "MILO_STT_COMPUTE_TYPE": args.compute_type,
        "MILO_STT_CPU_THREADS": str(args.cpu_threads),
        "MILO_STT_BEAM_SIZE": str(args.beam_size),
    }
    with (
        tempfile.TemporaryDirectory(prefix="milo-bench-stt-") as tmp,
        ServiceProcess("services.stt", env=env, prefix="MILO_STT_") as svc,
        grpc.insecure_channel(svc.address) as channel,
    ):
        clips = make_clips(Path(tmp))
        stub = stt_pb2_grpc.SttStub(channel)
        describe = stub.Describe(stt_pb2.DescribeRequest())
        recognize = recognize_bench(args, stub, clips)
        streaming = streaming_bench(args, svc.address, clips)
    report(recognize, streaming, args, describe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
