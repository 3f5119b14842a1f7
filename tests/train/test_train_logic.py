"""Tier 1: the memory estimate, the schedule check, checkpoint selection, the labels and the
metric, with no training."""

from __future__ import annotations

import json
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
