"""Tier 3: the best checkpoint of the trained fixture goes into a models folder through
`milo train stt export`; the STT service (its own process) loads it and `milo eval stt`
scores it on the test split beside the base model."""

from __future__ import annotations

import json

import pytest

from services import cli

pytest.importorskip("faster_whisper")
pytest.importorskip("ctranslate2")
# The first test that needs the trained fixture pays for its training (minutes on a busy
# shared machine, well under one on a quiet one).
pytestmark = [pytest.mark.tier3, pytest.mark.timeout(1200)]  # real training


def test_export_puts_the_model_in_service_and_scores_it(
    trained, tiny_whisper, phrases, tmp_path, capsys
):
    output, outcome, _ = trained
    models = tmp_path / "models"
    code = cli.main(
        [
            "train",
            "stt",
            "export",
            str(outcome.best_checkpoint),
            "--models",
            str(models),
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    entry = json.loads((models / "manifest.json").read_text())["stt"]
    assert entry["base_model"] == str(tiny_whisper) and entry["dataset"] == str(phrases)
    assert entry["steps"] == int(outcome.best_checkpoint.name.split("-")[1])
    assert entry["validation_wer"] == pytest.approx(outcome.best_wer)
    assert entry["demo"] is False and entry["language"] == "mg"
    assert (models / "stt" / "model.bin").is_file()
    assert "milo eval stt on 12 test clips" in out
    assert "base " in out and "fine-tuned checkpoint-" in out
    report = json.loads((output / "eval" / "report.json").read_text())
    assert report["fine-tuned"]["utterances"] == 12
    assert report["fine-tuned"]["model"]["model_id"] == entry["id"]
    assert report["fine-tuned"]["wer"] < report["base"]["wer"]
    assert entry["test_wer"] == pytest.approx(100 * report["fine-tuned"]["wer"], abs=0.01)
