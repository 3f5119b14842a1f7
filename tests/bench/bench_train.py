"""Benchmark `milo train stt`'s training step: optimizer steps per second and peak memory,
beside the pre-flight memory estimate (services/train/memory.py) for the same shape.

    python tests/bench/bench_train.py                 # CPU, the tiny test Whisper, fp32
    python tests/bench/bench_train.py --gpu           # CUDA: whisper-medium shape, batch 4, bf16

Each step runs the real Seq2SeqTrainer with Milo's training arguments on synthetic batches
(random log-mel features of 30 s, random label ids of --label-tokens tokens), so it measures
the model's cost without the audio decoding (the data loader workers do that beside the
GPU). The weights are random: the compute and memory are those of the real model of that
shape. GPU peak: torch.cuda.max_memory_reserved (what the card must hold) and
max_memory_allocated; CPU peak: the process's maximum resident set size (includes torch
itself). The estimate is for a GPU; on CPU it is printed without the CUDA context term.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MEDIUM = {
    "d_model": 1024,
    "encoder_layers": 24,
    "decoder_layers": 24,
    "encoder_attention_heads": 16,
    "decoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "decoder_ffn_dim": 4096,
}
TINY = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 256,
    "decoder_ffn_dim": 256,
}
GIB = 1024**3


class Synthetic:
    """A map-style dataset of random features and labels (fixed seed)."""

    def __init__(self, rows: int, label_tokens: int, vocab: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(rows, 80, 3000, generator=generator)
        self.labels = torch.randint(0, 50_000, (rows, label_tokens), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_features": self.features[i], "labels": self.labels[i]}


def build(shape: dict[str, int]) -> Any:
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=51_865,
        num_mel_bins=80,
        decoder_start_token_id=50_258,
        pad_token_id=50_257,
        eos_token_id=50_257,
        bos_token_id=50_257,
        **shape,
    )
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config)


class Timer:
    def __init__(self) -> None:
        self.marks: dict[int, float] = {}

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class Mark(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.marks[state.global_step] = time.perf_counter()

        return Mark()


def measure(args: argparse.Namespace) -> None:
    import torch
    from transformers import Seq2SeqTrainer

    from services.train.data import DatasetSpec
    from services.train.memory import ModelShape, RunPlan, estimate
    from services.train.run import TrainConfig, training_arguments

    gpu = args.gpu
    model = build(MEDIUM if gpu else TINY)
    precision = "bf16" if gpu else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            model="bench",
            dataset=DatasetSpec("bench"),
            output=Path(tmp),
            max_steps=args.steps + args.warmup,
            batch_size=args.batch_size,
            learning_rate=1e-5,
            warmup_steps=0,
            eval_steps=10**6,
            save_steps=10**6,
            logging_steps=10**6,
            gradient_checkpointing="on" if args.gradient_checkpointing else "off",
        )
        targs = replace(
            training_arguments(cfg, precision, args.gradient_checkpointing, 0, 32),
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
        )
        data = Synthetic(args.batch_size * (args.steps + args.warmup), args.label_tokens, 51_865)
        timer = Timer()
        trainer = Seq2SeqTrainer(
            model=model, args=targs, train_dataset=data, callbacks=[timer.callback()]
        )
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    steps_s = args.steps / (timer.marks[args.steps + args.warmup] - timer.marks[args.warmup])
    parameters = sum(p.numel() for p in model.parameters())
    shape = ModelShape.of(model.config, parameters)
    plan = RunPlan(
        args.batch_size,
        args.label_tokens,
        precision,  # type: ignore[arg-type]
        gradient_checkpointing=args.gradient_checkpointing,
        gpu=gpu,
    )
    predicted = estimate(shape, plan)
    print(
        f"shape: {'whisper-medium' if gpu else 'tiny test Whisper'} ({parameters / 1e6:.1f} M "
        f"parameters), batch {args.batch_size}, labels {args.label_tokens} tokens, "
        f"{precision}, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}"
    )
    print(
        f"steps/s: {steps_s:.3f} over {args.steps} steps after {args.warmup} warm-up steps "
        f"({args.batch_size * steps_s:.2f} clips/s)"
    )
    print(f"pre-flight estimate:\n{predicted.table()}")
    if gpu:
        reserved = torch.cuda.max_memory_reserved()
        allocated = torch.cuda.max_memory_allocated()
        print(
            f"measured peak: reserved {reserved / GIB:.2f} GiB, allocated "
            f"{allocated / GIB:.2f} GiB; estimate / reserved = {predicted.total / reserved:.2f}"
        )
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"measured peak resident memory (whole process, torch included): "
            f"{rss / GIB:.2f} GiB; estimate / peak = {predicted.total / rss:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="whisper-medium shape on CUDA, bf16")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--label-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, help="timed steps (CPU 20, GPU 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    args.batch_size = args.batch_size or 4
    args.steps = args.steps or 20
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print(
                "no CUDA GPU here: the GPU mode (whisper-medium shape, batch 4, bf16) needs "
                "one; run without --gpu for the CPU figures",
                file=sys.stderr,
            )
            return 2
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
