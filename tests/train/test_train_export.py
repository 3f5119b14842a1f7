"""Tier 3: a checkpoint goes into a models folder through `milo train stt export`; the STT
service (its own process) loads it and `milo eval stt` scores it on the test split (the
side-by-side score of the base model is left out: a random base model decodes to the
length limit with every temperature fallback, minutes on a busy machine).

The STT service feeds Whisper 30 s windows, so this test trains its own tiny model with the
real window (the other training tests use a 4 s window to be quick) for a few steps: it
proves the path, not the accuracy (the overfit test does that)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services import cli

pytest.importorskip("faster_whisper")
pytest.importorskip("ctranslate2")
sys.path.insert(0, str(Path(__file__).parent))
from conftest import base_config
from train_support import build_tiny_whisper

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(1200)]  # real training and a service

TEST_CLIPS = 3


@pytest.fixture(scope="module")
def whisper_30s(phrases, tmp_path_factory):
    """(base model folder, Outcome) of six steps on a tiny Whisper with a 30 s window."""
    from services.train.run import run

    root = tmp_path_factory.mktemp("window30")
    model = build_tiny_whisper(root / "model", window_s=30)
    cfg = base_config(
        model,
        phrases,
        root / "out",
        max_steps=6,
        batch_size=12,
        grad_accum=1,
        learning_rate=6e-3,
        warmup_steps=1,
        eval_steps=6,
        save_steps=6,
    )
    return model, run(cfg)


def test_export_puts_the_model_in_service_and_scores_it(
    whisper_30s, phrases, tmp_path, capsys, monkeypatch
):
    # A model trained six steps decodes to Whisper's 448-token limit; with the default beam 5
    # and every temperature fallback that took 14 minutes on a loaded machine. The service
    # that export starts reads its settings from the environment: one greedy pass per clip.
    monkeypatch.setenv("MILO_STT_BEAM_SIZE", "1")
    monkeypatch.setenv("MILO_STT_LOG_PROB_THRESHOLD", "-1000")
    monkeypatch.setenv("MILO_STT_COMPRESSION_RATIO_THRESHOLD", "1000")
    model, outcome = whisper_30s
    checkpoint = outcome.best_checkpoint or outcome.last_checkpoint
    models = tmp_path / "models"
    code = cli.main(
        [
            "train",
            "stt",
            "export",
            str(checkpoint),
            "--models",
            str(models),
            "--device",
            "cpu",
            "--max-test-samples",
            str(TEST_CLIPS),
            "--no-baseline",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    entry = json.loads((models / "manifest.json").read_text())["stt"]
    assert entry["base_model"] == str(model) and entry["dataset"] == str(phrases)
    assert entry["steps"] == 6 and entry["language"] == "mg" and entry["demo"] is False
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    scored = [e for e in history if e.get("step") == 6 and "eval_wer" in e]
    assert entry["validation_wer"] == scored[-1]["eval_wer"]  # the checkpoint's own score
    assert entry["validation_cer"] == scored[-1]["eval_cer"]
    assert (models / "stt" / "model.bin").is_file()
    assert f"milo eval stt on {TEST_CLIPS} test clips" in captured.out
    assert "fine-tuned checkpoint-6" in captured.out
    report = json.loads((checkpoint.parent / "eval" / "report.json").read_text())
    assert report["fine-tuned"]["utterances"] == TEST_CLIPS and "base" not in report
    assert report["fine-tuned"]["model"]["model_id"] == entry["id"]
    assert entry["test_wer"] == pytest.approx(100 * report["fine-tuned"]["wer"], abs=0.01)
