"""Benchmark the translate service: concurrent clients against one-at-a-time requests.

The service runs as `python -m services.translate` in its own process, called over gRPC on
loopback. The same sentences are sent twice: one at a time by a single client, then by
`--clients` concurrent clients (each sends its share, one request after the other). Goal of
dynamic batching: throughput at least 3x, with median latency at most 2x a single request.
The phrase cache is off for this comparison (the sentences repeat).

Models:
- `demo`: the random-weight NLLB-architecture demo model (tiny: measures overheads).
- `shape`: a random-weight model of facebook/nllb-200-distilled-600M's shape (d_model 1024,
  12+12 layers, ffn 4096, 16 heads, vocabulary 256,206), int8, built once into --cache
  (~30 s, ~5 GB of RAM while building, 0.6 GB on disk). It costs what the real model
  costs per token. Random weights never emit </s>, so the length guard is set to input + 2
  tokens: each output is about as long as a real translation of the sentence.

The service's defaults apply unless a flag says otherwise (beam 1 on CPU, window 5 ms).
Timings depend on what else the machine runs: the load average is printed with them.

Extras: `--cache-check` times a repeated greeting with the phrase cache on (miss, then
hits); `--vmap-sweep` times CTranslate2 directly on the shape model with the output
vocabulary restricted to N pieces (what `restrict_vocab` buys depends on how many of the
real vocabulary's pieces the target languages keep; the service logs that number).

    python tests/bench/bench_translate.py                     # demo and shape models
    python tests/bench/bench_translate.py --models shape --clients 16 --rounds 2
    python tests/bench/bench_translate.py --models shape --vmap-sweep --cache-check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "milo" / "bench"
# facebook/nllb-200-distilled-600M, from its config.json.
NLLB_600M_SHAPE = {
    "vocab_size": 256206,
    "d_model": 1024,
    "encoder_layers": 12,
    "decoder_layers": 12,
    "encoder_attention_heads": 16,
    "decoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "decoder_ffn_dim": 4096,
    "max_position_embeddings": 1024,
}


@dataclass
class Phase:
    name: str
    latencies: list[float]  # seconds, one per request
    wall: float
    input_tokens: int
    output_tokens: int

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall

    def row(self) -> str:
        lat = sorted(self.latencies)
        p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
        return (
            f"{self.name:<16}{len(lat):>8}{self.wall:>9.2f}{self.throughput:>9.2f}"
            f"{statistics.median(lat) * 1000:>11.1f}{p90 * 1000:>9.1f}{lat[-1] * 1000:>9.1f}"
        )


# --- models -------------------------------------------------------------------------------


def ensure_demo(demo_dir: Path) -> Path:
    from services.models.demo import build_demo

    build_demo(demo_dir)
    return demo_dir / "translate"


def build_shape_model(demo_translate: Path, dest: Path, quantization: str = "int8") -> Path:
    """A random-weight model of NLLB-600M's shape in CTranslate2 format at `dest` (once).

    Its tokenizer is the demo's SentencePiece model with NLLB's language codes; the
    converter pads the vocabulary to 256,206 entries like the real one's, so the output
    layer costs what the real model's does.
    """
    if (dest / "model.bin").is_file():
        return dest
    import ctranslate2
    import torch
    import transformers

    print(f"building the NLLB-600M-shape model into {dest} (once)...", flush=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="milo-bench-nllb-") as tmp:
        hf = Path(tmp)
        shutil.copy(demo_translate / "sentencepiece.bpe.model", hf / "sentencepiece.bpe.model")
        vocab = json.loads((demo_translate / "shared_vocabulary.json").read_text("utf-8"))
        codes = [t for t in vocab if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", t)]
        tokenizer = transformers.NllbTokenizer.from_pretrained(
            str(hf), extra_special_tokens=codes, src_lang="plt_Latn", tgt_lang="fra_Latn"
        )
        tokenizer.save_pretrained(str(hf))
        config = transformers.M2M100Config(
            **NLLB_600M_SHAPE,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=2,
            scale_embedding=True,
            tokenizer_class="NllbTokenizer",
        )
        config.save_pretrained(str(hf))

        class RandomInit(ctranslate2.converters.TransformersConverter):  # type: ignore[misc]
            def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
                torch.manual_seed(0)
                return model_class(config).eval()

        RandomInit(str(hf), copy_files=["sentencepiece.bpe.model"]).convert(
            str(partial), quantization=quantization, force=True
        )
    partial.rename(dest)
    return dest


def bench_sentences(count: int, spm: Path, tokens: int = 0) -> list[str]:
    """Reply-length sentences: pairs of demo-corpus sentences joined into one.

    With `tokens`, each is cut (at a word) to at most that many SentencePiece pieces: a
    random model never stops early, so a batch would otherwise decode as long as its
    longest input allows, where a real model's short outputs leave the batch at </s>.
    """
    import sentencepiece

    from services.models.demo_corpus import corpus_sentences

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm))
    lines = corpus_sentences()
    out = []
    for i in range(count):
        a, b, c = (lines[(3 * i + k) % len(lines)] for k in range(3))
        text = f"{a.rstrip('.?!')}, {b[0].lower()}{b[1:].rstrip('.?!')}, {c[0].lower()}{c[1:]}"
        while tokens and len(sp.encode(text)) > tokens and " " in text:
            text = text.rsplit(" ", 1)[0]
        out.append(text)
    return out


# --- clients ------------------------------------------------------------------------------


async def one_at_a_time(address: str, sentences: list[str], **kw: Any) -> Phase:
    import grpc

    from milo.translate.v1 import translate_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TranslatorStub(channel)
        start = time.perf_counter()
        results = [await _timed(stub, s, **kw) for s in sentences]
    return _phase("one at a time", results, time.perf_counter() - start)


async def concurrent(address: str, sentences: list[str], clients: int, **kw: Any) -> Phase:
    import grpc

    from milo.translate.v1 import translate_pb2_grpc as pb_grpc

    async def client(share: list[str]) -> list[tuple[float, int, int]]:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TranslatorStub(channel)
            return [await _timed(stub, s, **kw) for s in share]

    start = time.perf_counter()
    shares = await asyncio.gather(*(client(sentences[i::clients]) for i in range(clients)))
    return _phase(
        f"{clients} concurrent", [r for s in shares for r in s], time.perf_counter() - start
    )


async def _timed(
    stub: Any, sentence: str, src: str = "mg", tgt: str = "fr", beam: int | None = None
) -> tuple[float, int, int]:
    from milo.translate.v1 import translate_pb2 as pb

    request = pb.TranslateRequest(texts=[sentence], source_language=src, target_language=tgt)
    if beam is not None:
        request.beam_size = beam
    start = time.perf_counter()
    reply = await stub.Translate(request, timeout=600)
    t = reply.translations[0]
    return time.perf_counter() - start, t.input_tokens, t.output_tokens


def _phase(name: str, results: list[tuple[float, int, int]], wall: float) -> Phase:
    return Phase(
        name, [r[0] for r in results], wall, sum(r[1] for r in results), sum(r[2] for r in results)
    )


def batch_metrics(log_text: str) -> tuple[float, float]:
    """(sentences, engine calls) so far, from the service's /metrics."""
    port = re.search(r"metrics on http://[^:]+:(\d+)/metrics", log_text)
    if port is None:
        return 0.0, 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = dict(re.findall(r"^milo_translate_batch_sentences_(sum|count) (\S+)$", text, re.M))
    return float(values.get("sum", 0)), float(values.get("count", 0))


# --- runs ---------------------------------------------------------------------------------


def run_model(
    label: str,
    model_dir: Path,
    args: argparse.Namespace,
    rounds: int,
    equal_tokens: int,
    env: dict[str, str],
) -> None:
    from procs import ServiceProcess

    env = {
        "MILO_TRANSLATE_MODEL_DIR": str(model_dir),
        "MILO_TRANSLATE_CACHE_SIZE": "0",
        "MILO_TRANSLATE_BATCH_WINDOW_MS": str(args.window_ms),
        "MILO_TRANSLATE_THREADS": str(args.threads),
        "MILO_TRANSLATE_RESTRICT_VOCAB": str(not args.no_restrict_vocab).lower(),
        **env,
    }
    if args.beam is not None:
        env["MILO_TRANSLATE_BEAM_SIZE"] = str(args.beam)
    sentences = bench_sentences(
        args.clients * rounds, model_dir / "sentencepiece.bpe.model", equal_tokens
    )
    with ServiceProcess(
        "services.translate", env, prefix="MILO_TRANSLATE_", startup_timeout=600
    ) as svc:
        asyncio.run(one_at_a_time(svc.address, sentences[:2]))  # warm the connection path
        single = asyncio.run(one_at_a_time(svc.address, sentences))
        before = batch_metrics(svc.log())
        many = asyncio.run(concurrent(svc.address, sentences, args.clients))
        after = batch_metrics(svc.log())
        loaded = re.search(r"output vocabulary (\d+) of (\d+)", svc.log())
    _report(label, env, single, many, (after[0] - before[0], after[1] - before[1]), loaded)
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


def _report(
    label: str,
    env: dict[str, str],
    single: Phase,
    many: Phase,
    batches: tuple[float, float],
    loaded: re.Match[str] | None,
) -> None:
    n = len(single.latencies)
    print(
        f"\n== {label}: beam {env.get('MILO_TRANSLATE_BEAM_SIZE', 'default (1 on CPU)')}, "
        f"window {env['MILO_TRANSLATE_BATCH_WINDOW_MS']} ms, threads "
        f"{env['MILO_TRANSLATE_THREADS'] or 'all'}, output vocabulary "
        f"{loaded.group(1) + ' of ' + loaded.group(2) if loaded else '?'}"
    )
    print(
        f"{n} sentences, {single.input_tokens / n:.1f} input and "
        f"{single.output_tokens / n:.1f} output tokens on average"
    )
    print(
        f"{'mode':<16}{'requests':>8}{'wall s':>9}{'req/s':>9}{'median ms':>11}"
        f"{'p90 ms':>9}{'max ms':>9}"
    )
    print(single.row())
    print(many.row())
    x_tp = many.throughput / single.throughput
    x_lat = statistics.median(many.latencies) / statistics.median(single.latencies)
    sentences, calls = batches
    print(
        f"throughput x{x_tp:.2f} (goal >= 3), median latency x{x_lat:.2f} of one at a time "
        f"(goal <= 2); concurrent run: {calls:.0f} engine calls, "
        f"{sentences / max(calls, 1):.1f} sentences per call"
    )


def cache_check(model_dir: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    from procs import ServiceProcess

    env = {
        "MILO_TRANSLATE_MODEL_DIR": str(model_dir),
        "MILO_TRANSLATE_THREADS": str(args.threads),
        **env,
    }
    with ServiceProcess(
        "services.translate", env, prefix="MILO_TRANSLATE_", startup_timeout=600
    ) as svc:
        phase = asyncio.run(one_at_a_time(svc.address, ["Salama tompoko."] * 21))
    miss, hits = phase.latencies[0], phase.latencies[1:]
    print(
        f"\n== phrase cache ({model_dir.name}): first 'Salama tompoko.' {miss * 1000:.1f} ms, "
        f"repeats median {statistics.median(hits) * 1000:.2f} ms"
    )


def vmap_sweep(model_dir: Path, args: argparse.Namespace) -> None:
    """CTranslate2 alone: decoding time with the output layer cut to N candidates."""
    import ctranslate2

    vocab = json.loads((model_dir / "shared_vocabulary.json").read_text("utf-8"))
    source = ["plt_Latn", *vocab[10:30], "</s>"]
    threads = args.threads or os.cpu_count() or 1
    print(
        f"\n== output vocabulary sweep (CTranslate2 alone, 20 input and 22 output tokens, "
        f"beam {args.beam or 1}, {threads} threads)"
    )
    print(f"{'candidates':>10}{'batch 1 ms':>12}{'batch 16 ms':>13}")
    for keep in (len(vocab), 128_000, 64_000, 32_000):
        with tempfile.TemporaryDirectory(prefix="milo-bench-vmap-") as tmp:
            for path in model_dir.iterdir():
                (Path(tmp) / path.name).symlink_to(path.resolve())
            (Path(tmp) / "vmap.txt").write_text("\t" + " ".join(vocab[3:keep]) + "\n")
            tr = ctranslate2.Translator(tmp, device="cpu", intra_threads=threads)
            restricted = keep < len(vocab)
            times = [_decode_time(tr, source, bs, args.beam or 1, restricted) for bs in (1, 16)]
        print(f"{keep:>10}{times[0] * 1000:>12.0f}{times[1] * 1000:>13.0f}")


def _decode_time(tr: Any, source: list[str], batch: int, beam: int, vmap: bool) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        tr.translate_batch(
            [source] * batch,
            target_prefix=[["fra_Latn"]] * batch,
            beam_size=beam,
            max_decoding_length=23,
            min_decoding_length=23,
            use_vmap=vmap,
        )
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--models", default="demo,shape", help="demo, shape, or both")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="shape model cache")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="requests per client (default: 20 demo, 3 shape; 0: skip)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=20,
        help="shape model: sentences of this many pieces (0: as they come)",
    )
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--beam", type=int, default=None, help="default: the service's")
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--no-restrict-vocab", action="store_true")
    parser.add_argument("--cache-check", action="store_true")
    parser.add_argument("--vmap-sweep", action="store_true")
    args = parser.parse_args(argv)
    demo = ensure_demo(args.demo_dir)
    print(
        f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; "
        f"service threads: {args.threads or 'all'}"
    )
    shape_env = {"MILO_TRANSLATE_MAX_OUTPUT_RATIO": "1.0", "MILO_TRANSLATE_MAX_OUTPUT_EXTRA": "2"}
    for name in filter(None, args.models.split(",")):
        if name == "demo":
            model, env, rounds = demo, {}, 20 if args.rounds is None else args.rounds
            label = "demo model (random NLLB architecture, tiny)"
        elif name == "shape":
            model, env, rounds = (
                build_shape_model(demo, args.cache / "nllb600m-shape-int8"),
                shape_env,
                3 if args.rounds is None else args.rounds,
            )
            label = "NLLB-600M shape (random weights, int8)"
        else:
            parser.error(f"unknown model {name!r}")
        if rounds > 0:
            run_model(label, model, args, rounds, 0 if name == "demo" else args.tokens, env)
        if args.cache_check:
            cache_check(model, args, env)
    if args.vmap_sweep:
        vmap_sweep(build_shape_model(demo, args.cache / "nllb600m-shape-int8"), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
