"""`milo train stt ...` and `milo train stt export CHECKPOINT`: registered on the main CLI.

    milo train stt --model openai/whisper-medium --dataset badrex/malagasy-speech-full \\
        --output runs/whisper-medium-mg --epochs 10 --batch-size 4 --grad-accum 4 \\
        --eval-steps 1000 --save-steps 1000 --resume auto
    milo train stt export runs/whisper-medium-mg/checkpoint-7000 [--models models]

Hub ids (model and dataset) are read from the local Hugging Face cache: the command sets
HF_HUB_OFFLINE=1 unless given --online.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

EXIT_ERROR = 2


def add_commands(subparsers: Any) -> None:
    """Register `milo train stt` and `milo train stt export`."""
    train = subparsers.add_parser("train", help="fine-tune a model (Whisper for STT)")
    sub = train.add_subparsers(dest="train_target", required=True, metavar="TARGET")
    stt = sub.add_parser(
        "stt",
        help="fine-tune Whisper on a speech dataset, then export it to the models folder",
        description="Fine-tune Whisper with transformers' Seq2SeqTrainer, evaluating WER/CER on "
        "the validation split, then convert the best checkpoint into the models folder and "
        "score it on the test split beside the base model. `milo train stt export CHECKPOINT` "
        "does only the last part.",
    )
    _train_flags(stt)
    stt.set_defaults(func=_run_train)
    actions = stt.add_subparsers(dest="stt_action", metavar="{export}")
    export = actions.add_parser(
        "export", help="convert a checkpoint into the models folder and evaluate it"
    )
    export.add_argument("checkpoint", type=Path, help="a checkpoint-N folder")
    export.add_argument("--base", help="base model (default: the run's, from milo-train.json)")
    _export_flags(export)
    _dataset_flags(export, required=False)
    export.add_argument("--online", action="store_true", help="allow hub downloads")
    export.set_defaults(func=_run_export)


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="hub id (e.g. openai/whisper-medium) or local folder")
    _dataset_flags(p, required=True)
    p.add_argument("--output", type=Path, help="run folder: checkpoints, metrics.csv")
    p.add_argument("--resume", help="`auto` (newest checkpoint in --output) or a checkpoint")
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the data (3)")
    p.add_argument("--max-steps", type=int, help="optimizer steps in all (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step per device (16)")
    p.add_argument("--eval-batch-size", type=int, help="default: --batch-size")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (1)")
    p.add_argument("--learning-rate", type=float, default=1e-5, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up (500, at most 10%% of run)")
    p.add_argument("--eval-steps", type=int, default=1000, help="validate every N steps")
    p.add_argument("--save-steps", type=int, default=1000, help="checkpoint every N steps")
    p.add_argument(
        "--save-limit",
        type=int,
        default=2,
        help="checkpoints kept (the best by validation WER is always kept)",
    )
    p.add_argument("--logging-steps", type=int, default=25, help="loss/LR logged every N steps")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "fp32"),
        default="auto",
        help="auto: bf16 where the GPU has it, else fp16; fp32 on CPU",
    )
    p.add_argument(
        "--gradient-checkpointing",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: on when the memory estimate needs it",
    )
    p.add_argument("--optim", choices=("adamw_torch", "adafactor"), default="adamw_torch")
    p.add_argument("--language", default="mg", help="Whisper language code (mg)")
    p.add_argument(
        "--generation-max-length",
        type=int,
        help="tokens generated per clip in evaluation (default: from the labels)",
    )
    p.add_argument("--max-eval-samples", type=int, help="validate on the first N clips only")
    p.add_argument("--num-workers", type=int, help="data loader processes (GPU: 4, CPU: 0)")
    p.add_argument(
        "--gpu-memory-gb", type=float, help="plan for a card of this size (default: the GPU's own)"
    )
    p.add_argument(
        "--skip-memory-check",
        action="store_true",
        help="start even if the memory estimate says it will not fit",
    )
    p.add_argument("--no-export", action="store_true", help="stop after training")
    _export_flags(p)
    p.add_argument("--online", action="store_true", help="allow hub downloads")


def _dataset_flags(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--dataset",
        help="hub id (local cache), save_to_disk folder, or audiofolder"
        + ("" if required else " (default: the run's)"),
    )
    p.add_argument("--audio-column", help="default: the Audio column, or audio/file_name/path")
    p.add_argument("--text-column", help="default: sentence/text/transcription/transcript")
    p.add_argument("--train-split", default="train")
    p.add_argument("--eval-split", help="default: validation/valid/dev/eval")
    p.add_argument("--test-split", help="default: test (else the eval split)")
    p.add_argument("--cache-dir", type=Path, help="datasets cache folder")


def _export_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", type=Path, help="models folder (default: $MILO_MODELS_DIR or ./models)"
    )
    p.add_argument("--quantization", default="float16", help="CTranslate2 weights (float16)")
    p.add_argument("--no-eval", action="store_true", help="skip `milo eval stt` on the test split")
    p.add_argument("--no-baseline", action="store_true", help="do not score the base model")
    p.add_argument("--max-test-samples", type=int, help="score the first N test clips only")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the STT service runs for the evaluation",
    )


def _prepare(args: argparse.Namespace) -> None:
    if not args.online:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "datasets", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _spec(args: argparse.Namespace) -> Any:
    from services.train.data import DatasetSpec

    return DatasetSpec(
        args.dataset,
        args.audio_column,
        args.text_column,
        args.train_split,
        args.eval_split,
        args.test_split,
        args.cache_dir,
    )


def _run_train(args: argparse.Namespace) -> int:
    missing = [f"--{n}" for n in ("model", "dataset", "output") if not getattr(args, n)]
    if missing:
        print(f"milo train stt: {', '.join(missing)} required", file=sys.stderr)
        return EXIT_ERROR
    _prepare(args)
    return _guarded(_train, args)


def _train(args: argparse.Namespace) -> int:
    from services.train.run import TrainConfig, run, signal_name

    cfg = TrainConfig(
        model=args.model,
        dataset=_spec(args),
        output=args.output,
        resume=args.resume,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        grad_accum=args.grad_accum,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_limit,
        logging_steps=args.logging_steps,
        seed=args.seed,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        optim=args.optim,
        language=args.language,
        generation_max_length=args.generation_max_length,
        max_eval_samples=args.max_eval_samples,
        num_workers=args.num_workers,
        gpu_memory_gb=args.gpu_memory_gb,
        skip_memory_check=args.skip_memory_check,
    )
    outcome = run(cfg)
    if outcome.stopped_by is not None:
        print(
            f"stopped by {signal_name(outcome.stopped_by)} at step {outcome.global_step}; "
            f"saved {outcome.last_checkpoint}; continue with --resume auto",
            flush=True,
        )
        return outcome.exit_code
    print(
        f"done: {outcome.global_step} steps; best checkpoint {outcome.best_checkpoint} "
        f"(validation WER {outcome.best_wer:.2f}%)"
        if outcome.best_wer is not None
        else f"done: {outcome.global_step} steps",
        flush=True,
    )
    chosen = outcome.best_checkpoint or outcome.last_checkpoint
    if args.no_export or chosen is None:
        return 0
    if outcome.best_checkpoint is None:
        print(
            f"no checkpoint scored better than the base model; exporting the last one, "
            f"{chosen.name}",
            flush=True,
        )
    _free_gpu()
    _export(args, chosen, args.model)
    return 0


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _export(args: argparse.Namespace, checkpoint: Path, base: str | None) -> None:
    from services.models.layout import default_models_dir
    from services.train.export import ExportConfig, export

    export(
        ExportConfig(
            checkpoint=checkpoint,
            models_dir=args.models or default_models_dir(),
            base=base,
            dataset=_spec(args) if args.dataset else None,
            quantization=args.quantization,
            evaluate=not args.no_eval,
            baseline=not args.no_baseline,
            max_test_samples=args.max_test_samples,
            device=args.device,
            language=getattr(args, "language", "mg"),
        )
    )


def _run_export(args: argparse.Namespace) -> int:
    _prepare(args)

    def export_only(a: argparse.Namespace) -> int:
        _export(a, a.checkpoint, a.base)
        return 0

    return _guarded(export_only, args)


def _guarded(handler: Any, args: argparse.Namespace) -> int:
    from services.train.errors import TrainError

    try:
        return int(handler(args))
    except TrainError as exc:
        print(f"milo train stt: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:
        print(
            f"milo train stt: {exc.name or exc} is not installed: pip install 'milo[train]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
