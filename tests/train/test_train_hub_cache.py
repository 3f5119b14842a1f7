"""A Hugging Face dataset id is read from the local cache with no network (HF_HUB_OFFLINE=1),
in either form a download leaves: `datasets`' prepared Arrow cache (what an online
`load_dataset(id)` wrote) or only the hub snapshot (what `hf download` wrote, which
`datasets` alone does not read offline); an id in neither gets a clear error. A model hub
id is read from the same cache."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import wave
from pathlib import Path

import pytest

from services import cli

sys.path.insert(0, str(Path(__file__).parent))
from train_support import PHRASES, need_espeak, speak, write_hub_cache, write_hub_model

pytestmark = pytest.mark.tier3  # the real datasets and huggingface_hub loading code

REPO = "someone/tiny-malagasy-speech"
SPLITS = {"train": PHRASES[:4], "validation": PHRASES[4:6], "test": PHRASES[6:8]}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face home in tmp_path, offline, with every connection refused.
    (datasets and huggingface_hub read HF_HOME and HF_HUB_OFFLINE when imported, so their
    module constants are set too.)"""
    import datasets
    from huggingface_hub import constants

    home = tmp_path / "hf"
    for name, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def no_network(self, address):
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return home


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, list[tuple[Path, str]]]:
    need_espeak()
    root = tmp_path_factory.mktemp("hub-clips")
    return {
        split: [(speak(text, root / f"{split}-{i}.wav"), text) for i, text in enumerate(texts)]
        for split, texts in SPLITS.items()
    }


@pytest.mark.parametrize("cache", ["prepared by datasets", "hub snapshot only"])
def test_a_cached_hub_dataset_loads_offline(cache, offline_cache, clips):
    from services.train.data import DatasetSpec, load_audio, open_dataset, select_splits

    write_hub_cache(offline_cache, REPO, clips, prepared=cache == "prepared by datasets")
    if cache == "prepared by datasets":
        shutil.rmtree(offline_cache / "hub")  # datasets' own cache alone must serve
    spec = DatasetSpec(REPO)
    splits = select_splits(open_dataset(spec), spec)
    assert (splits.audio_column, splits.text_column) == ("audio", "sentence")
    assert splits.names == {"train": "train", "eval": "validation", "test": "test"}
    assert [len(splits.train), len(splits.eval), len(splits.test)] == [4, 2, 2]
    assert splits.train["sentence"] == list(SPLITS["train"])
    wav, _ = clips["test"][0]
    with wave.open(str(wav)) as source:  # espeak-ng writes 22,050 Hz
        seconds = source.getnframes() / source.getframerate()
    samples = load_audio(splits.test[0]["audio"], splits.root)  # the embedded WAV bytes
    assert samples.dtype.name == "float32"
    assert samples.size == pytest.approx(seconds * 16_000, abs=160)  # resampled to 16 kHz


def test_train_stt_reads_hub_ids_from_the_cache(
    offline_cache, clips, tiny_whisper, tmp_path, capsys
):
    """The command itself, one step, with the dataset and the model given as hub ids: it
    finds the splits and columns, trains, evaluates and shows its progress."""
    write_hub_cache(offline_cache, REPO, clips, prepared=False)
    write_hub_model(offline_cache, "someone/tiny-whisper", tiny_whisper)
    output = tmp_path / "run"
    flags = {
        "--model": "someone/tiny-whisper",
        "--dataset": REPO,
        "--output": output,
        "--max-steps": 1,
        "--batch-size": 4,
        "--eval-steps": 1,
        "--save-steps": 1,
        "--logging-steps": 1,
        "--generation-max-length": 4,
    }
    code = cli.main(["train", "stt", *(str(x) for kv in flags.items() for x in kv), "--no-export"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert (output / "checkpoint-1" / "trainer_state.json").is_file()
    assert "train split 'train': 4 of 4 clips usable" in out
    assert "eval split 'validation': 2 of 2 clips usable" in out
    # the progress bar (steps, ETA, loss, learning rate) and a line per evaluation
    assert "training: 100%" in err and "1/1 [" in err and "loss=" in err and "lr=" in err
    for step in (0, 1):  # the base model, then after the step
        assert re.search(rf"^step {step}: validation WER [\d.]+%, CER [\d.]+%", out, re.M), out
    assert "done: 1 steps" in out


def test_a_hub_id_not_in_the_cache_says_how_to_get_it(
    offline_cache, tiny_whisper, tmp_path, capsys
):
    output = str(tmp_path / "run")
    code = cli.main(
        ["train", "stt", "--model", str(tiny_whisper), "--dataset", REPO, "--output", output]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"dataset '{REPO}' is not cached on this machine" in err
    assert str(offline_cache / "datasets") in err and str(offline_cache / "hub") in err
    assert f"`hf download --repo-type dataset {REPO}`" in err and "--online" in err
