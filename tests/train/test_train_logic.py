"""Tier 1: the memory estimate, the schedule check, checkpoint selection, the labels and the
metric, the command line and the precision choice, with no training."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from services.train import checkpoints
from services.train.errors import TrainError
from services.train.memory import GIB, ModelShape, RunPlan, check, estimate
from services.train.run import scheduled_lr

# openai/whisper-medium: 763,857,920 parameters, width 1024, 24 + 24 layers, 16 heads.
MEDIUM = ModelShape(763_857_920, 1024, 24, 24, 16, 16, 51_865)


def test_medium_batch_4_terms_follow_the_documented_formula():
    plan = RunPlan(batch_size=4, label_tokens=128, precision="bf16")
    terms = estimate(MEDIUM, plan).terms
    p = MEDIUM.parameters
    assert terms["weights"] == terms["gradients"] == 4 * p and terms["optimizer"] == 8 * p
    assert terms["16-bit weight copies"] == 2 * p
    encoder = 24 * 1500 * 4 * 1024 * 34  # Korthikanti eq. 1 with fused attention
    decoder = 24 * (128 * 4 * 1024 * (34 + 11) + 2 * 1500 * 4 * 1024 * 2)
    assert terms["activations"] == encoder + decoder + 6 * 4 * 1024 * 3000
    assert terms["logits"] == 4 * 128 * 51_865 * 14
    assert terms["CUDA context"] == GIB


def test_a_16_gb_card_gets_advice_before_it_runs_out():
    plan = RunPlan(batch_size=4, label_tokens=128, precision="bf16")
    verdict = check(MEDIUM, plan, budget=16 * 10**9, grad_accum=4, auto_checkpointing=False)
    assert not verdict.fits
    assert any("--gradient-checkpointing on" in a for a in verdict.advice)
    assert any("adafactor" in a for a in verdict.advice)
    bigger = check(
        MEDIUM,
        RunPlan(batch_size=16, label_tokens=128),
        budget=16 * 10**9,
        grad_accum=1,
        auto_checkpointing=True,
    )
    assert not bigger.fits
    assert bigger.advice[0].startswith("--batch-size 4 --grad-accum 4 --gradient-checkpointing")


def test_auto_checkpointing_turns_itself_on_when_that_is_enough():
    plan = RunPlan(batch_size=4, label_tokens=128, precision="bf16")
    verdict = check(MEDIUM, plan, budget=16 * 10**9, grad_accum=4, auto_checkpointing=True)
    assert verdict.fits and verdict.plan.gradient_checkpointing
    assert "gradient checkpointing turned on" in verdict.advice[0]


def test_checkpointing_and_smaller_batches_need_less():
    plan = RunPlan(batch_size=8, label_tokens=200)
    full = estimate(MEDIUM, plan).total
    assert estimate(MEDIUM, replace(plan, gradient_checkpointing=True)).total < full
    assert estimate(MEDIUM, replace(plan, batch_size=4)).total < full
    assert estimate(MEDIUM, replace(plan, fused_attention=False)).total > full
    assert estimate(MEDIUM, replace(plan, optimizer="adafactor")).total < full


def test_schedule_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import get_linear_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-5)
    schedule = get_linear_schedule_with_warmup(optimizer, 50, 400)
    for step in range(400):
        assert scheduled_lr(1e-5, 50, 400, step) == pytest.approx(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()


def _checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_auto_takes_the_newest_complete_checkpoint(tmp_path):
    _checkpoint(tmp_path, 900)
    newest = _checkpoint(tmp_path, 1000)
    _checkpoint(tmp_path, 1100, complete=False)  # killed while saving
    (tmp_path / "checkpoint-x").mkdir()
    assert checkpoints.resolve_resume(tmp_path, "auto") == newest
    assert checkpoints.resolve_resume(tmp_path / "empty", "auto") is None
    assert checkpoints.resolve_resume(tmp_path, None) is None
    assert checkpoints.resolve_resume(tmp_path, str(newest)) == newest
    with pytest.raises(TrainError, match="incomplete"):
        checkpoints.resolve_resume(tmp_path, str(tmp_path / "checkpoint-1100"))
    with pytest.raises(TrainError, match="no such checkpoint"):
        checkpoints.resolve_resume(tmp_path, str(tmp_path / "checkpoint-5"))


def test_error_rates_use_the_eval_normalization():
    pytest.importorskip("jiwer")
    from services.stt.evaluate import Item, score
    from services.train.whisper import error_rates

    refs = ["Manao ahoana, tompoko!", "an'ny trano", "Tsara-tarehy izy."]
    hyps = ["manao ahoana tompo", "an ny trano", "tsara tarehy"]
    report = score([Item(Path(f"{i}.wav"), r, i) for i, r in enumerate(refs)], hyps)
    rates = error_rates(refs, hyps)
    assert rates["wer"] == pytest.approx(100 * report.wer)
    assert rates["cer"] == pytest.approx(100 * report.cer)


def test_labels_carry_the_malagasy_prompt_and_ignore_padding(tiny_whisper):
    from services.train.whisper import SpeechCollator, load_model, load_processor, pin_language

    processor, model = load_processor(str(tiny_whisper)), load_model(str(tiny_whisper))
    pin_language(model, processor.tokenizer, "mg")
    tokenizer = processor.tokenizer
    collator = SpeechCollator(processor, "audio", "text", None, model.config.decoder_start_token_id)
    labels = collator.labels(["Manao ahoana", "Misaotra betsaka tompoko"])
    prompt = tokenizer.convert_tokens_to_ids(["<|mg|>", "<|transcribe|>", "<|notimestamps|>"])
    assert labels[:, :3].tolist() == [prompt, prompt]
    assert (labels[0] == -100).any() and not (labels[1] == -100).any()
    first = [t for t in labels[0].tolist() if t != -100]
    assert first[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(first, skip_special_tokens=True) == "Manao ahoana"
    generation = model.generation_config
    assert (generation.language, generation.task) == ("mg", "transcribe")
    assert generation.lang_to_id["<|mg|>"] == prompt[0]


USER_COMMAND = [
    *("train", "stt", "--model", "openai/whisper-medium"),
    *("--dataset", "badrex/malagasy-speech-full", "--output", "runs/mg"),
    *("--epochs", "10", "--batch-size", "4", "--grad-accum", "4"),
    *("--eval-steps", "1000", "--save-steps", "1000", "--resume", "auto"),
    *("--learning-rate", "1e-5", "--seed", "42", "--models", "models-x"),
]


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """`milo train stt` with the training and the export replaced by recorders:
    (configs run, exports made, the Outcome the fake run returns)."""
    import services.train.export as export_module
    import services.train.run as run_module
    from services.train.run import Outcome

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after the test
    best = tmp_path / "checkpoint-7000"
    outcome = Outcome(7000, best, 31.5, None, tmp_path / "checkpoint-8000")
    runs: list = []
    exports: list = []
    monkeypatch.setattr(run_module, "run", lambda cfg: runs.append(cfg) or outcome)
    monkeypatch.setattr(export_module, "export", exports.append)
    return runs, exports, outcome


def test_the_users_command_line_maps_onto_the_run_and_exports_the_best(fake_run, capsys):
    from services import cli

    runs, exports, outcome = fake_run
    assert cli.main(USER_COMMAND) == 0
    (cfg,) = runs
    assert (cfg.model, cfg.dataset.source, cfg.output) == (
        "openai/whisper-medium",
        "badrex/malagasy-speech-full",
        Path("runs/mg"),
    )
    assert (cfg.resume, cfg.epochs, cfg.max_steps, cfg.batch_size, cfg.grad_accum) == (
        "auto",
        10.0,
        None,
        4,
        4,
    )
    assert (cfg.eval_steps, cfg.save_steps, cfg.learning_rate, cfg.seed) == (1000, 1000, 1e-5, 42)
    assert (cfg.language, cfg.precision, cfg.gradient_checkpointing) == ("mg", "auto", "auto")
    (export,) = exports  # at the end of training: the best checkpoint, into the models folder
    assert (export.checkpoint, export.base, export.models_dir) == (
        outcome.best_checkpoint,
        "openai/whisper-medium",
        Path("models-x"),
    )
    assert export.dataset.source == "badrex/malagasy-speech-full" and export.evaluate
    assert "best checkpoint" in capsys.readouterr().out
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # hub ids come from the local cache


def test_a_run_stopped_by_ctrl_c_exits_130_and_says_how_to_continue(fake_run, capsys):
    from services import cli

    runs, exports, outcome = fake_run
    outcome.stopped_by = signal.SIGINT
    assert cli.main([*USER_COMMAND, "--max-steps", "9000"]) == 130
    assert runs[0].max_steps == 9000 and not exports
    out = capsys.readouterr().out
    assert "stopped by SIGINT at step 7000" in out and "continue with --resume auto" in out


def test_precision_follows_the_hardware(monkeypatch):
    torch = pytest.importorskip("torch")
    from services.train.run import pick_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_precision("auto") == "fp32"
    with pytest.raises(TrainError, match="fp16 needs a CUDA GPU"):
        pick_precision("fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_precision("auto") == "bf16"  # e.g. the user's RTX 5070 Ti (Blackwell)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert pick_precision("auto") == "fp16"
    with pytest.raises(TrainError, match="does not support bf16"):
        pick_precision("bf16")


def test_training_arguments_keep_the_best_checkpoint_by_validation_wer(tmp_path):
    pytest.importorskip("transformers")
    from services.train.data import DatasetSpec
    from services.train.run import TrainConfig, training_arguments

    cfg = TrainConfig("m", DatasetSpec("d"), tmp_path, max_steps=10, eval_steps=5, save_steps=5)
    args = training_arguments(cfg, "fp32", False, 2, 32)
    assert (args.eval_strategy, args.save_strategy) == ("steps", "steps")
    assert (args.eval_steps, args.save_steps, args.save_total_limit) == (5, 5, 2)
    # the Trainer never rotates away the best checkpoint by this metric
    assert args.load_best_model_at_end and args.metric_for_best_model == "wer"
    assert args.greater_is_better is False and args.predict_with_generate
    assert (args.bf16, args.fp16, args.warmup_steps, args.seed) == (False, False, 2, 42)
