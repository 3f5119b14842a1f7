"""Benchmark the LLM service against llama-cpp-python in process, same model and settings.

For each run: time to first token (TTFT, from sending the request to the first text) and
decode speed (completion tokens after the first, over the time since the first text), both
seen by the client, and the CPU time the model's process spent per token (all its threads;
on a busy shared machine this is steadier than the rates). Three sides, with the same
model, context, threads, GPU layers and sampling (greedy, fixed seed, so every side
generates the same tokens):

- library: llama-cpp-python's own streaming `create_chat_completion`, in process;
- engine:  the service's LlamaEngine called directly, in process (the service minus gRPC,
           the worker-thread bridge and the queue: what the service itself costs);
- service: `python -m services.llm` in its own process, called over gRPC on loopback.

Each side has a process of its own (two llama.cpp thread pools in one process slow each
other down badly) and generates from a worker thread, as the service does; runs alternate
between the sides, so that changes in machine load hit all of them alike.

The demo GGUF is tiny (a fraction of a millisecond per token), which makes the figures a
measure of per-token overhead. `--shape small|medium` builds (once, into --cache) a
random-weight llama with the demo vocabulary and real layer sizes, whose per-token cost is
that of a small real model.

    python tests/bench/bench_llm.py                       # the demo GGUF
    python tests/bench/bench_llm.py --shape small --runs 3 --max-tokens 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SYSTEM = "Tu es Milo, un assistant vocal. Réponds brièvement."
USER = "Bonjour ! Peux-tu me raconter une histoire sur Madagascar ?"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "milo" / "bench"
# Random-weight llama shapes: (n_embd, n_layer, n_head, n_ff); F16 weights.
SHAPES = {"small": (768, 12, 12, 2048), "medium": (1024, 24, 16, 2816)}


@dataclasses.dataclass
class Run:
    ttft_ms: float
    tokens: int
    decode_tps: float
    cpu_s: float = 0.0  # CPU time of the process that runs the model, all its threads


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decode_rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def build_shape_model(demo_gguf: Path, shape: str, cache: Path) -> Path:
    """A random llama of `shape` with the demo GGUF's tokenizer and chat template (once)."""
    n_embd, n_layer, n_head, n_ff = SHAPES[shape]
    dest = cache / f"llama-{shape}-random-f16-v2.gguf"
    if dest.is_file():
        return dest
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(demo_gguf))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    rng = np.random.default_rng(0)

    def normal(*shape: int, std: float = 0.02) -> Any:
        return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float16)

    cache.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"milo-bench-llama-{shape}")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list([t.encode() for t in field("tokenizer.ggml.tokens")])
    w.add_token_scores(field("tokenizer.ggml.scores"))
    w.add_token_types(field("tokenizer.ggml.token_type"))
    for key, add in (
        ("bos", w.add_bos_token_id),
        ("eos", w.add_eos_token_id),
        ("unknown", w.add_unk_token_id),
    ):
        add(int(field(f"tokenizer.ggml.{key}_token_id")))
    w.add_chat_template(field("tokenizer.chat_template"))
    n_vocab = len(field("tokenizer.ggml.tokens"))
    ones = np.ones(n_embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", normal(n_vocab, n_embd, std=1.0))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", normal(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", normal(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", normal(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", normal(n_embd, n_ff))
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
    w.add_tensor("output_norm.weight", ones)
    output = normal(n_vocab, n_embd, std=0.5)
    types = np.asarray(field("tokenizer.ggml.token_type"))
    output[types != gguf.TokenType.NORMAL] = 0  # as in the demo: no byte tokens, no early EOS
    w.add_tensor("output.weight", output)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.rename(dest)
    return dest


class InProcess:
    """llama-cpp-python's streaming chat completion, in this process."""

    def __init__(self, model: Path, args: argparse.Namespace) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(
            model_path=str(model),
            n_ctx=args.context,
            n_threads=args.threads,
            n_gpu_layers=args.gpu_layers,
            verbose=False,
        )
        self.args = args

    def run(self) -> Run:
        """Tokens are counted as text chunks: llama-cpp-python streams one per token (it holds
        one back only inside a UTF-8 character or a possible stop string)."""
        a, first, last, chunks, text = self.args, 0.0, 0.0, 0, []
        start = time.perf_counter()
        for chunk in self.llm.create_chat_completion(
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
            stream=True,
            max_tokens=a.max_tokens,
            temperature=0.0,
            top_p=0.95,
            top_k=40,
            repeat_penalty=1.1,
            seed=1,
        ):
            content = chunk["choices"][0]["delta"].get("content")  # type: ignore[index]
            if content:
                last = time.perf_counter()
                first, chunks = first or last, chunks + 1
                text.append(content)
        self.text = "".join(text)
        return Run((first - start) * 1000, chunks, decode_rate(chunks, first, last))

    def close(self) -> None:
        self.llm.close()


class EngineInProcess:
    """The service's own engine (LlamaEngine) called directly: the service minus gRPC, the
    worker thread and the queue, i.e. what the service itself costs per token."""

    def __init__(self, model: Path, args: argparse.Namespace) -> None:
        from services.llm.llama_engine import LlamaEngine

        self.engine = LlamaEngine(model, args.context, args.gpu_layers, args.threads)
        self.engine.load()
        self.args = args

    def run(self) -> Run:
        import threading

        from services.llm.domain import ChatMessage, Finish, Role, Sampling

        messages = (ChatMessage(Role.SYSTEM, SYSTEM), ChatMessage(Role.USER, USER))
        sampling = Sampling(
            temperature=0.0,
            top_p=0.95,
            top_k=40,
            repeat_penalty=1.1,
            max_tokens=self.args.max_tokens,
            seed=1,
        )
        first = last = 0.0
        tokens, text = 0, []
        start = time.perf_counter()
        for event in self.engine.generate(messages, sampling, threading.Event()):
            if isinstance(event, Finish):
                tokens = event.completion_tokens
            else:
                last = time.perf_counter()
                first = first or last
                text.append(event.text)
        self.text = "".join(text)
        return Run((first - start) * 1000, tokens, decode_rate(tokens, first, last))

    def close(self) -> None:
        self.engine.close()


class ThroughService:
    """The LLM service in its own process, over gRPC."""

    def __init__(self, model: Path, args: argparse.Namespace) -> None:
        import grpc
        from procs import ServiceProcess

        from milo.llm.v1 import llm_pb2, llm_pb2_grpc

        env = {
            "MILO_LLM_MODEL_PATH": str(model),
            "MILO_LLM_CONTEXT_TOKENS": str(args.context),
            "MILO_LLM_GPU_LAYERS": str(args.gpu_layers),
        }
        if args.threads:
            env["MILO_LLM_THREADS"] = str(args.threads)
        self.proc = ServiceProcess("services.llm", env, prefix="MILO_LLM_")
        try:
            self.proc.start()
        except BaseException:
            self.proc.kill()
            raise
        self.channel = grpc.insecure_channel(self.proc.address)
        self.stub = llm_pb2_grpc.LlmStub(self.channel)
        self.request = llm_pb2.ChatRequest(
            messages=[
                llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM, content=SYSTEM),
                llm_pb2.Message(role=llm_pb2.ROLE_USER, content=USER),
            ],
            sampling=llm_pb2.SamplingOptions(
                max_tokens=args.max_tokens,
                temperature=0.0,
                top_p=0.95,
                top_k=40,
                repeat_penalty=1.1,
                seed=1,
            ),
            allow_cloud=False,
        )
        self.server_side: list[tuple[float, float]] = []

    def run(self) -> Run:
        first = last = 0.0
        text = []
        assert self.proc.proc is not None
        cpu = process_cpu_s(self.proc.proc.pid)
        start = time.perf_counter()
        for reply in self.stub.Chat(self.request):
            if reply.HasField("delta"):
                last = time.perf_counter()
                first = first or last
                text.append(reply.delta.text)
            else:
                done = reply.done
        self.text = "".join(text)
        self.server_side.append((done.time_to_first_token_ms, done.tokens_per_second))
        tokens = done.usage.completion_tokens
        cpu = process_cpu_s(self.proc.proc.pid) - cpu
        return Run((first - start) * 1000, tokens, decode_rate(tokens, first, last), cpu)

    def close(self) -> None:
        self.channel.close()
        self.proc.stop()


def summary(name: str, runs: list[Run]) -> tuple[float, float]:
    ttft = statistics.median(r.ttft_ms for r in runs)
    tps = statistics.median(r.decode_tps for r in runs)
    tokens = ",".join(str(r.tokens) for r in runs)
    cpu_ms = 1000 * sum(r.cpu_s for r in runs) / max(1, sum(r.tokens for r in runs))
    print(
        f"{name}\n  TTFT median {ttft:8.1f} ms   decode median {tps:8.1f} tok/s   "
        f"CPU {cpu_ms:6.2f} ms/token   (tokens per run: {tokens})"
    )
    return ttft, tps


class InChild:
    """An in-process side run in a child process of its own, so that all sides stay loaded
    and runs can alternate (two llama.cpp thread pools in one process fight for the CPU).
    The child times its runs itself; only the results cross over, after each run."""

    def __init__(self, side: str, model: Path, args: argparse.Namespace) -> None:
        command = [
            sys.executable,
            __file__,
            "--worker",
            side,
            "--model",
            str(model),
            "--omp-wait-policy",
            args.omp_wait_policy,
            "--context",
            str(args.context),
            "--gpu-layers",
            str(args.gpu_layers),
            "--max-tokens",
            str(args.max_tokens),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.text = ""

    def run(self) -> Run:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark worker exited with {self.proc.wait()}")
        result = json.loads(line)
        self.text = result.pop("text")
        return Run(**result)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def worker(args: argparse.Namespace) -> int:
    """`--worker library|engine`: one in-process side; a run per line read on stdin."""
    side = {"library": InProcess, "engine": EngineInProcess}[args.worker](args.model, args)
    with ThreadPoolExecutor(1) as thread:  # a worker thread, as in the service
        for _ in sys.stdin:
            cpu = time.process_time()
            run = thread.submit(side.run).result()
            run.cpu_s = time.process_time() - cpu
            print(json.dumps({**dataclasses.asdict(run), "text": side.text}), flush=True)
    side.close()
    return 0


SIDES: dict[str, str] = {
    "library": "llama-cpp-python create_chat_completion(stream=True), in process",
    "engine": "the service's engine (LlamaEngine), in process",
    "service": "the service (python -m services.llm) over gRPC",
}


def measure(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Load every side, warm each up, then alternate runs so load drift hits all alike."""
    runners: dict[str, Any] = {}
    try:
        for name in SIDES:
            runners[name] = (
                ThroughService(model, args) if name == "service" else InChild(name, model, args)
            )
            runners[name].run()  # warm-up, not counted
            runners[name].runs = []
        for _ in range(args.runs):
            for runner in runners.values():
                runner.runs.append(runner.run())
    finally:
        for runner in runners.values():
            runner.close()
    return runners


def report(runners: dict[str, Any]) -> None:
    figures = {name: summary(SIDES[name], r.runs) for name, r in runners.items()}
    service = runners["service"]
    srv_ttft = statistics.median(t for t, _ in service.server_side[1:])
    srv_tps = statistics.median(r for _, r in service.server_side[1:])
    print(f"  as its ChatDone reports: TTFT {srv_ttft:.1f} ms, decode {srv_tps:.1f} tok/s")
    ttft, tps = figures["service"]
    same = runners["library"].text.strip() == service.text.strip()
    for name, what in (("library", "create_chat_completion"), ("engine", "its engine")):
        base_ttft, base_tps = figures[name]
        print(
            f"service / {what + ':':<24} decode {tps / base_tps:5.2f}x, "
            f"TTFT {ttft - base_ttft:+7.1f} ms"
        )
    print(
        f"same reply text through the service and in process: {'yes' if same else 'NO'}; "
        "goal: decode >= 0.90x in-process"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from services.runtime.config import models_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        type=Path,
        default=models_root() / "llm" / "model.gguf",
        help="GGUF file (default: $MILO_MODELS_DIR/llm/model.gguf, the demo set)",
    )
    p.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        help="build and use a random llama of "
        "this shape with --model's tokenizer: small ~85M, medium ~330M params",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where --shape models go")
    p.add_argument("--runs", type=int, default=5, help="measured runs per side (default 5)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per reply (default 256)")
    p.add_argument("--context", type=int, default=4096, help="context tokens (default 4096)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (llama.cpp default)")
    p.add_argument("--gpu-layers", type=int, default=-1, help="layers on the GPU (-1: all)")
    p.add_argument("--worker", choices=["library", "engine"], help=argparse.SUPPRESS)
    p.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active"],
        default="passive",
        help="OpenMP idle threads sleep (passive, default) or spin (active); "
        "spinning on a busy CPU slows llama.cpp 10x or more",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()  # before llama.cpp loads
    if args.worker:
        return worker(args)
    model = build_shape_model(args.model, args.shape, args.cache) if args.shape else args.model
    print(
        f"model {model} ({model.stat().st_size / 1e6:.0f} MB), {args.max_tokens} tokens, "
        f"{args.runs} runs per side, threads {args.threads or 'default'}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    report(measure(model, args))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
