"""`milo train stt`: one fine-tuning run of Whisper with transformers' Seq2SeqTrainer.

The steps, in order: check the output folder and the checkpoint to resume; load the
processor and model and pin the language; open and screen the dataset; pick the precision
and check GPU memory before anything is allocated there; train (Ctrl-C / SIGTERM save a
checkpoint and stop); then export the best checkpoint (services/train/export.py).

Resume is the Trainer's own (`resume_from_checkpoint`): weights, optimizer moments,
learning-rate scheduler, RNG states, step counter, and the data position (it skips the
batches already seen in the current epoch, in the same seeded order). So a checkpoint of a
plain Seq2SeqTrainer script resumes too, given the same model, dataset and batch settings;
what can be checked from its files is checked (model shape, batch size, learning rate at
its last logged step).
"""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.train import checkpoints
from services.train.data import DatasetSpec, Screened, Splits, checker, screen, select_splits
from services.train.errors import TrainError
from services.train.memory import GIB, ModelShape, RunPlan, check
from services.train.whisper import (
    MAX_LABEL_TOKENS,
    SpeechCollator,
    load_model,
    load_processor,
    metric_function,
    pin_language,
    shape_of,
)

log = logging.getLogger(__name__)

PrecisionChoice = Literal["auto", "bf16", "fp16", "fp32"]
Switch = Literal["auto", "on", "off"]
DEFAULT_WARMUP = 500  # steps (the usual Whisper fine-tuning recipe), at most 10 % of the run


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; the CLI fills it from flags."""

    model: str
    dataset: DatasetSpec
    output: Path
    resume: str | None = None
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int | None = None
    grad_accum: int = 1
    learning_rate: float = 1e-5
    warmup_steps: int | None = None
    eval_steps: int = 1000
    save_steps: int = 1000
    save_total_limit: int = 2
    logging_steps: int = 25
    seed: int = 42
    precision: PrecisionChoice = "auto"
    gradient_checkpointing: Switch = "auto"
    optim: Literal["adamw_torch", "adafactor"] = "adamw_torch"
    language: str = "mg"
    generation_max_length: int | None = None
    max_eval_samples: int | None = None
    num_workers: int | None = None
    gpu_memory_gb: float | None = None
    skip_memory_check: bool = False
    callbacks: tuple[Any, ...] = field(default=(), compare=False)


@dataclass
class Outcome:
    """How a run ended."""

    global_step: int
    best_checkpoint: Path | None
    best_wer: float | None
    stopped_by: int | None  # the signal number when stopped by SIGINT/SIGTERM
    last_checkpoint: Path | None
    screened: dict[str, Screened] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The process exit code: 0, or 128 + the signal number when stopped by a signal (the
        shell convention)."""
        return 0 if self.stopped_by is None else 128 + self.stopped_by


def validate(cfg: TrainConfig) -> None:
    """Settings that cannot work together, said before anything loads."""
    if cfg.save_steps % cfg.eval_steps:
        raise TrainError(
            f"--save-steps {cfg.save_steps} must be a multiple of --eval-steps "
            f"{cfg.eval_steps} (checkpoints are kept by their validation WER)"
        )
    for name in ("batch_size", "grad_accum", "eval_steps", "save_steps", "logging_steps"):
        if getattr(cfg, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.max_steps is None and cfg.epochs <= 0:
        raise TrainError("--epochs must be positive (or give --max-steps)")


def run(cfg: TrainConfig) -> Outcome:
    """Train (or resume) as `cfg` says; returns how it ended. Raises TrainError."""
    validate(cfg)
    processor = load_processor(cfg.model)
    model = load_model(cfg.model)
    shape = shape_of(model.config)
    identity = {
        "model": cfg.model,
        "shape": shape,
        "dataset": cfg.dataset.source,
        "language": cfg.language,
    }
    resume = checkpoints.resolve_resume(cfg.output, cfg.resume)
    checkpoints.check_output(cfg.output, identity, resuming=cfg.resume is not None)
    state = checkpoints.check_checkpoint(resume, shape) if resume else {}
    if state.get("train_batch_size") not in (None, cfg.batch_size):
        raise TrainError(
            f"{resume} was trained with --batch-size {state['train_batch_size']};"
            f" resuming with {cfg.batch_size} would not continue at the same data "
            f"position: pass --batch-size {state['train_batch_size']}"
        )
    pin_language(model, processor.tokenizer, cfg.language)
    splits, screened = prepare_data(cfg, processor)
    precision = pick_precision(cfg.precision)
    gc = plan_memory(cfg, model, screened["train"].max_label_tokens, precision)
    total = total_steps(cfg, len(screened["train"].dataset))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(DEFAULT_WARMUP, total // 10)
    if resume:
        check_schedule(state, cfg, total, warmup)
    checkpoints.write_run(cfg.output, identity)
    trainer, stopper = build_trainer(
        cfg, model, processor, splits, screened, precision, gc, warmup, resuming=resume is not None
    )
    log.info(
        "training %s on %s: %d steps (%s, gradient checkpointing %s)%s",
        cfg.model,
        cfg.dataset.source,
        total,
        precision,
        "on" if gc else "off",
        f", resuming {resume}" if resume else "",
    )
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        stopper.restore()
    return _outcome(trainer, stopper, cfg.output, screened)


def _outcome(trainer: Any, stopper: Any, output: Path, screened: dict[str, Screened]) -> Outcome:
    st = trainer.state
    best = Path(st.best_model_checkpoint) if st.best_model_checkpoint else None
    if best is not None and not best.is_dir():  # a path from another machine
        best = output / best.name if (output / best.name).is_dir() else None
    found = checkpoints.list_checkpoints(output)
    return Outcome(
        global_step=st.global_step,
        best_checkpoint=best,
        best_wer=st.best_metric,
        stopped_by=stopper.received,
        last_checkpoint=found[-1] if found else None,
        screened=screened,
    )


def prepare_data(cfg: TrainConfig, processor: Any) -> tuple[Splits, dict[str, Screened]]:
    """Open, select and screen the train and eval splits; print what was skipped."""
    from services.train.data import open_dataset

    splits = select_splits(open_dataset(cfg.dataset), cfg.dataset)
    check = checker(
        splits.audio_column,
        splits.text_column,
        splits.root,
        lambda text: len(processor.tokenizer(text).input_ids),
        MAX_LABEL_TOKENS,
        max_seconds=float(processor.feature_extractor.chunk_length),
    )
    screened: dict[str, Screened] = {}
    for role in ("train", "eval"):
        part = splits.train if role == "train" else splits.eval
        if role == "eval" and cfg.max_eval_samples:
            part = part.select(range(min(cfg.max_eval_samples, len(part))))
        result = screen(part, check, splits.names[role], num_proc=_map_workers(len(part)))
        print(result.summary(f"{role} split {splits.names[role]!r}"), flush=True)
        if len(result.dataset) == 0:
            raise TrainError(
                f"the {role} split {splits.names[role]!r} has no usable clip "
                "(see the reasons above)"
            )
        screened[role] = result
    return splits, screened


def _map_workers(rows: int) -> int | None:
    workers = min(8, os.cpu_count() or 1)
    return workers if rows >= 2000 and workers > 1 else None


def pick_precision(requested: PrecisionChoice) -> str:
    """bf16 where the GPU supports it, else fp16 on a GPU, fp32 on CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and not cuda:
        raise TrainError("--precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise TrainError("this GPU does not support bf16: use --precision fp16")
    return requested


def plan_memory(cfg: TrainConfig, model: Any, label_tokens: int, precision: str) -> bool:
    """The pre-flight GPU memory check; returns whether to use gradient checkpointing."""
    import torch

    wanted = cfg.gradient_checkpointing == "on"
    on_gpu = torch.cuda.is_available()
    if not on_gpu and cfg.gpu_memory_gb is None:
        return wanted
    budget = int((cfg.gpu_memory_gb or _gpu_gib()) * GIB)
    shape = ModelShape.of(model.config, sum(p.numel() for p in model.parameters()))
    plan = RunPlan(
        cfg.batch_size,
        label_tokens + 1,
        precision,  # type: ignore[arg-type]
        gradient_checkpointing=wanted,
        optimizer=cfg.optim,
        gpu=True,
    )
    verdict = check(shape, plan, budget, cfg.grad_accum, cfg.gradient_checkpointing == "auto")
    print(
        f"GPU memory estimate for batch {cfg.batch_size}, labels up to {label_tokens} "
        f"tokens, {precision} (budget {budget / GIB:.1f} GiB):\n{verdict.estimate.table()}",
        flush=True,
    )
    for line in verdict.advice if verdict.fits else ():
        print(line, flush=True)
    if not verdict.fits and not cfg.skip_memory_check:
        raise TrainError(
            f"this run needs about {verdict.estimate.total / GIB:.1f} GiB of GPU memory, more "
            f"than the {budget / GIB:.1f} GiB available; change: "
            + "; or ".join(verdict.advice)
            + " (or --skip-memory-check to try anyway)"
        )
    return verdict.plan.gradient_checkpointing


def _gpu_gib() -> float:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / GIB


def total_steps(cfg: TrainConfig, train_rows: int) -> int:
    """Optimizer steps of the whole run, as the Trainer counts them."""
    if cfg.max_steps:
        return cfg.max_steps
    batches = math.ceil(train_rows / cfg.batch_size)
    per_epoch = batches // cfg.grad_accum + int(batches % cfg.grad_accum > 0)
    return math.ceil(cfg.epochs * per_epoch)


def check_schedule(state: dict[str, Any], cfg: TrainConfig, total: int, warmup: int) -> None:
    """Warn when this run's schedule would not give the checkpoint's logged learning rate at
    its last logged step (other --learning-rate, --warmup-steps, epochs or data size)."""
    logged = [e for e in state.get("log_history", []) if "learning_rate" in e and "step" in e]
    if state.get("max_steps") not in (None, total):
        log.warning(
            "the checkpoint's run had %s steps in all, this one has %d: the learning "
            "rate schedule differs (same --epochs/--max-steps, --batch-size, "
            "--grad-accum and dataset give the same)",
            state["max_steps"],
            total,
        )
    if not logged:
        return
    step, theirs = int(logged[-1]["step"]), float(logged[-1]["learning_rate"])
    ours = scheduled_lr(cfg.learning_rate, warmup, total, step - 1)
    if not math.isclose(ours, theirs, rel_tol=1e-3, abs_tol=1e-12):
        log.warning(
            "learning rate at step %d: the checkpoint logged %.4g, this run's schedule "
            "gives %.4g: pass the original --learning-rate and --warmup-steps",
            step,
            theirs,
            ours,
        )


def scheduled_lr(peak: float, warmup: int, total: int, step: int) -> float:
    """transformers' linear schedule with warm-up (get_linear_schedule_with_warmup)."""
    if step < warmup:
        return peak * step / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def build_trainer(
    cfg: TrainConfig,
    model: Any,
    processor: Any,
    splits: Splits,
    screened: dict[str, Screened],
    precision: str,
    gc: bool,
    warmup: int,
    resuming: bool = False,
) -> tuple[Any, Any]:
    """The Seq2SeqTrainer for this run (WER/CER on the validation split, Milo's callbacks in
    place of transformers' progress printers) and its StopOnSignal callback."""
    from transformers import PrinterCallback, ProgressCallback, Seq2SeqTrainer

    from services.train.callbacks import CsvMetrics, FinalEvaluation, ProgressBar, StopOnSignal

    if gc:
        model.config.use_cache = False
    labels = screened["train"].max_label_tokens
    args = training_arguments(
        cfg,
        precision,
        gc,
        warmup,
        cfg.generation_max_length or min(MAX_LABEL_TOKENS, max(32, labels + labels // 4 + 8)),
        eval_on_start=not resuming,
    )
    collator = SpeechCollator(
        processor,
        splits.audio_column,
        splits.text_column,
        splits.root,
        model.config.decoder_start_token_id,
    )
    stopper = StopOnSignal()
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=screened["train"].dataset,
        eval_dataset=screened["eval"].dataset,
        data_collator=collator,
        processing_class=processor,
        compute_metrics=metric_function(processor.tokenizer),
        callbacks=[
            stopper,
            FinalEvaluation(),
            ProgressBar(),
            CsvMetrics(cfg.output / "metrics.csv"),
            *cfg.callbacks,
        ],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer, stopper


def training_arguments(
    cfg: TrainConfig,
    precision: str,
    gc: bool,
    warmup: int,
    generation_max_length: int,
    eval_on_start: bool = False,
) -> Any:
    """The Seq2SeqTrainingArguments of a run. A fresh run is also scored before its first
    step (eval_on_start), so the metrics log starts with the base model's validation WER."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    cuda = torch.cuda.is_available()
    workers = (
        cfg.num_workers
        if cfg.num_workers is not None
        else (min(4, os.cpu_count() or 1) if cuda else 0)
    )
    return Seq2SeqTrainingArguments(
        output_dir=str(cfg.output),
        seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        warmup_steps=warmup,
        lr_scheduler_type="linear",
        optim=cfg.optim,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        eval_on_start=eval_on_start,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="wer",
        greater_is_better=False,
        logging_steps=cfg.logging_steps,
        report_to="none",
        disable_tqdm=True,
        predict_with_generate=True,
        generation_max_length=generation_max_length,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        **_checkpointing(Seq2SeqTrainingArguments, gc),
        dataloader_num_workers=workers,
        remove_unused_columns=False,
        label_names=["labels"],
    )


def _checkpointing(args_class: Any, on: bool) -> dict[str, Any]:
    """Gradient checkpointing under the name this transformers has (5.x renamed it
    `activation_checkpointing`; the old name warns)."""
    from dataclasses import fields

    name = "activation_checkpointing"
    if name not in {f.name for f in fields(args_class)}:
        name = "gradient_checkpointing"
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}


def signal_name(number: int) -> str:
    """The signal's name: 2 -> "SIGINT"."""
    return signal.Signals(number).name
