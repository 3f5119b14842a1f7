"""The dataset forms `--dataset` takes besides a hub id (tests/train/test_train_hub_cache.py):
a save_to_disk folder (a DatasetDict, or one Dataset = a train split), an audiofolder with
metadata.jsonl, and columns named by --audio-column/--text-column. Loading only: no model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.train.data import DatasetSpec, load_audio, open_dataset, select_splits
from services.train.errors import TrainError

pytestmark = pytest.mark.tier3  # the real datasets loading code


def _clips(phrases: Path, n: int) -> list[tuple[Path, str]]:
    import csv

    with (phrases / "train" / "metadata.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file_name"] != "broken.wav"]
    return [(phrases / "train" / r["file_name"], r["sentence"]) for r in rows[:n]]


def _with_audio(clips: list[tuple[Path, str]], audio: str = "audio", text: str = "sentence"):
    from datasets import Audio, Dataset

    cells = [{"bytes": wav.read_bytes(), "path": wav.name} for wav, _ in clips]
    data = Dataset.from_dict({audio: cells, text: [t for _, t in clips]})
    return data.cast_column(audio, Audio())


def test_a_save_to_disk_dataset_dict_loads(phrases, tmp_path):
    from datasets import DatasetDict

    clips = _clips(phrases, 4)
    parts = {"train": clips[:2], "dev": clips[2:3], "test": clips[3:]}
    DatasetDict({k: _with_audio(v) for k, v in parts.items()}).save_to_disk(str(tmp_path / "d"))
    spec = DatasetSpec(str(tmp_path / "d"))
    splits = select_splits(open_dataset(spec), spec)
    assert splits.names == {"train": "train", "eval": "dev", "test": "test"}
    assert (splits.audio_column, splits.text_column) == ("audio", "sentence")
    assert load_audio(splits.eval[0]["audio"], splits.root).size > 16_000 // 2


def test_a_saved_single_dataset_is_the_train_split(phrases, tmp_path):
    _with_audio(_clips(phrases, 2)).save_to_disk(str(tmp_path / "d"))
    spec = DatasetSpec(str(tmp_path / "d"), eval_split="train")
    splits = select_splits(open_dataset(spec), spec)
    assert splits.names == {"train": "train", "eval": "train"} and splits.test is None
    assert len(splits.train) == 2


def test_an_audiofolder_with_metadata_jsonl_loads(phrases, tmp_path):
    for split, clips in {"train": _clips(phrases, 3), "validation": _clips(phrases, 1)}.items():
        folder = tmp_path / "d" / split
        folder.mkdir(parents=True)
        lines = []
        for wav, text in clips:
            shutil.copyfile(wav, folder / wav.name)
            lines.append(json.dumps({"file_name": wav.name, "transcription": text}))
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    spec = DatasetSpec(str(tmp_path / "d"))
    splits = select_splits(open_dataset(spec), spec)
    assert (splits.audio_column, splits.text_column) == ("file_name", "transcription")
    assert [len(splits.train), len(splits.eval)] == [3, 1]
    assert load_audio(splits.train[0]["file_name"], splits.root).dtype.name == "float32"


def test_columns_named_by_flags(phrases, tmp_path):
    """Columns no default would find: file paths in `recording`, the transcript in `words`
    (beside a `sentence` column that would be found by name)."""
    from datasets import Dataset, DatasetDict

    clips = _clips(phrases, 2)
    data = Dataset.from_dict(
        {
            "recording": [str(wav) for wav, _ in clips],
            "words": [text for _, text in clips],
            "sentence": ["not this one"] * 2,
        }
    )
    DatasetDict({"train": data}).save_to_disk(str(tmp_path / "d"))
    spec = DatasetSpec(str(tmp_path / "d"), "recording", "words", eval_split="train")
    splits = select_splits(open_dataset(spec), spec)
    assert (splits.audio_column, splits.text_column) == ("recording", "words")
    assert splits.train.column_names == ["recording", "words"]
    assert splits.train[0]["words"] == clips[0][1]
    assert load_audio(splits.train[0]["recording"], splits.root).size > 16_000 // 2
    unnamed = DatasetSpec(str(tmp_path / "d"), eval_split="train")
    with pytest.raises(TrainError, match=r"has no audio column .*--audio-column"):
        select_splits(open_dataset(unnamed), unnamed)
    wrong = DatasetSpec(str(tmp_path / "d"), "recording", "text", eval_split="train")
    with pytest.raises(TrainError, match=r"has no column 'text' .*--text-column"):
        select_splits(open_dataset(wrong), wrong)
