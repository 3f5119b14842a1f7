"""Training for real on CPU: a tiny random Whisper learns a dozen espeak-ng phrases; stopping
(Ctrl-C, SIGTERM, kill -9) and resuming gives the same steps, learning rates and losses as
the uninterrupted run; a plain Seq2SeqTrainer's checkpoint resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

from services.train.checkpoints import read_json
from services.train.run import run, scheduled_lr

sys.path.insert(0, str(Path(__file__).parent))
from conftest import OVERFIT_STEPS, STEPS, StopAt, base_config

CHILD = Path(__file__).parent / "train_child.py"
# The first test that needs the trained fixture pays for its training (minutes on a busy
# shared machine, well under one on a quiet one).
pytestmark = [pytest.mark.tier3, pytest.mark.timeout(1200)]  # real training


class SignalAt(TrainerCallback):
    """Send `sig` to this process during optimizer step `step` (before its end)."""

    def __init__(self, step: int, sig: int) -> None:
        self.step, self.sig = step, sig

    def on_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), self.sig)


def losses(history: list[dict]) -> dict[int, tuple[float, float]]:
    return {e["step"]: (e["loss"], e["learning_rate"]) for e in history if "loss" in e}


def assert_same_steps(got: dict, reference: dict, steps: range) -> None:
    for step in steps:
        assert step in got, f"step {step} was not logged"
        (loss, lr), (ref_loss, ref_lr) = got[step], reference[step]
        assert lr == pytest.approx(ref_lr, rel=1e-6), f"learning rate at step {step}"
        assert loss == pytest.approx(ref_loss, rel=1e-3, abs=1e-4), f"loss at step {step}"


def test_a_tiny_set_is_overfit(trained):
    _output, outcome, history = trained
    evals = [e for e in history if "eval_wer" in e]
    assert evals[0]["step"] == 0  # scored before the first step: the random model
    start, best = evals[0]["eval_wer"], min(e["eval_wer"] for e in evals)
    assert start >= 90, evals
    assert best <= min(start / 3, 75), evals
    assert outcome.global_step == OVERFIT_STEPS and outcome.best_wer == best
    assert outcome.best_checkpoint is not None and outcome.best_checkpoint.is_dir()
    generation = json.loads((outcome.best_checkpoint / "generation_config.json").read_text())
    assert (generation["language"], generation["task"]) == ("mg", "transcribe")
    assert outcome.screened["train"].skipped == {"unreadable audio": 1}


def test_metrics_csv_has_every_step_and_each_evaluation(trained):
    output, _outcome, history = trained
    with (output / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows if r["loss"]] == list(range(1, OVERFIT_STEPS + 1))
    evaluated = [int(r["step"]) for r in rows if r["eval_wer"]]
    assert evaluated == [e["step"] for e in history if "eval_wer" in e]
    assert all(float(r["learning_rate"]) > 0 for r in rows if r["loss"] and r["step"] != "1")


def test_ctrl_c_then_sigterm_then_resume_match_the_uninterrupted_run(
    reference, tiny_whisper, phrases, tmp_path
):
    out = tmp_path / "out"
    first = run(base_config(tiny_whisper, phrases, out, callbacks=(SignalAt(3, signal.SIGINT),)))
    assert (first.stopped_by, first.global_step) == (signal.SIGINT, 3)
    assert first.exit_code == 130 and (out / "checkpoint-3" / "optimizer.pt").is_file()
    second = run(
        base_config(
            tiny_whisper, phrases, out, resume="auto", callbacks=(SignalAt(6, signal.SIGTERM),)
        )
    )
    assert (second.stopped_by, second.global_step) == (signal.SIGTERM, 6)
    history = read_json(out / "checkpoint-6" / "trainer_state.json")["log_history"]
    assert_same_steps(losses(history), reference, range(1, 7))


def test_kill_9_loses_only_the_steps_since_the_last_save(
    reference, tiny_whisper, phrases, tmp_path
):
    out, marker = tmp_path / "out", tmp_path / "saved"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tiny_whisper), str(phrases), str(out), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _wait_for(marker, child)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    (out / "checkpoint-5").mkdir()  # as if killed while writing the next save
    resumed = run(
        base_config(
            tiny_whisper, phrases, out, resume="auto", callbacks=(SignalAt(6, signal.SIGTERM),)
        )
    )
    assert resumed.global_step == 6
    history = read_json(out / "checkpoint-6" / "trainer_state.json")["log_history"]
    assert_same_steps(losses(history), reference, range(1, 7))


def _wait_for(marker: Path, child: subprocess.Popen) -> None:
    """The child writes `marker` once checkpoint-4 is saved, then waits to be killed."""
    import selectors

    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child ended early: {child.stderr.read().decode()[-3000:]}")
        with selectors.DefaultSelector() as sel:  # wake on child output or every 0.2 s
            sel.register(child.stderr, selectors.EVENT_READ)
            for key, _ in sel.select(timeout=0.2):
                key.fileobj.read1(65536)


def test_a_plain_seq2seq_trainer_checkpoint_resumes(reference, tiny_whisper, phrases, tmp_path):
    """A checkpoint written by a user's own Seq2SeqTrainer script (no Milo files in the
    folder, no tokenizer in the checkpoint) continues with the same step, learning rate,
    optimizer state and data position."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from services.train.data import DatasetSpec, checker, open_dataset, screen, select_splits
    from services.train.whisper import SpeechCollator, load_model, load_processor, pin_language

    out = tmp_path / "user-run"
    processor, model = load_processor(str(tiny_whisper)), load_model(str(tiny_whisper))
    pin_language(model, processor.tokenizer, "mg")
    spec = DatasetSpec(str(phrases), eval_split="train")
    splits = select_splits(open_dataset(spec), spec)
    train = screen(
        splits.train, checker("file_name", "sentence", splits.root, lambda t: 1, 448), "train"
    ).dataset
    args = Seq2SeqTrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=3e-3,
        warmup_steps=4,
        seed=7,
        save_steps=2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    collator = SpeechCollator(
        processor, "file_name", "sentence", splits.root, model.config.decoder_start_token_id
    )
    trainer = Seq2SeqTrainer(
        model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[StopAt(2)]
    )
    trainer.train()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]
    assert not (out / "checkpoint-2" / "tokenizer.json").exists()

    resumed = run(
        base_config(
            tiny_whisper, phrases, out, resume="auto", callbacks=(SignalAt(4, signal.SIGTERM),)
        )
    )
    assert resumed.global_step == 4
    history = read_json(out / "checkpoint-4" / "trainer_state.json")["log_history"]
    got = losses(history)
    assert_same_steps(got, reference, range(1, 5))
    assert got[3][1] == pytest.approx(scheduled_lr(3e-3, 4, STEPS, 2))
