"""Tier 3 (engine only): VitsEngine on real transformers VITS models, in this process."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.tts import vits_engine
from services.tts.vits_engine import IDEEP_CACHE_CAPACITY, ONEDNN_CACHE_CAPACITY, VitsEngine


@pytest.fixture(scope="module")
def demo_engine(demo_models: Path) -> VitsEngine:
    engine = VitsEngine(demo_models / "tts", threads=1)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def two_speakers(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo VITS rebuilt with two speakers (random weights, same tokenizer)."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("vits2")
    config = transformers.VitsConfig.from_pretrained(str(demo_models / "tts"))
    config.num_speakers, config.speaker_embedding_size = 2, 8
    torch.manual_seed(0)
    transformers.VitsModel(config).save_pretrained(str(folder))
    for name in ("vocab.json", "tokenizer_config.json"):
        shutil.copy(demo_models / "tts" / name, folder / name)
    return folder


def test_demo_engine_reads_the_vocabulary_without_the_blank(demo_engine: VitsEngine) -> None:
    assert demo_engine.model_id == "milo-demo/vits-tiny-random-mlg"
    assert demo_engine.sample_rate == 16000
    assert list(demo_engine.voices) == ["mlg"]
    assert set("abdefghijklmnoprstvyz '-ô") <= demo_engine.vocab
    assert "_" not in demo_engine.vocab  # the padding symbol interleaved by add_blank
    assert not set("cquwx0123456789") & demo_engine.vocab


def test_load_bounds_the_cpu_kernel_caches(
    demo_engine: VitsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oneDNN and PyTorch's ideep each cache what they build per input shape; VITS makes new
    shapes all the time, so the TTS process grew without bounds (issue 20's soak). An
    operator's value wins."""
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_CACHE_CAPACITY)
    assert os.environ["LRU_CACHE_CAPACITY"] == str(IDEEP_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "4")
    vits_engine._import_torch()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "8"
    assert os.environ["LRU_CACHE_CAPACITY"] == "4"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_is_found_on_glibc() -> None:
    trim = vits_engine.malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: memory was released


def test_same_seed_same_samples(demo_engine: VitsEngine) -> None:
    one = demo_engine.synthesize("manao ahoana", "mlg", 1.0, 5)
    two = demo_engine.synthesize("manao ahoana", "mlg", 1.0, 5)
    other = demo_engine.synthesize("manao ahoana", "mlg", 1.0, 6)
    assert one.dtype == np.float32 and one.ndim == 1 and len(one) > 0
    assert np.array_equal(one, two)
    assert not (len(one) == len(other) and np.array_equal(one, other))


def test_each_speaker_is_a_voice(two_speakers: Path) -> None:
    engine = VitsEngine(two_speakers, voice="rasoa", threads=1, model_id="test/vits-2spk")
    engine.load()
    try:
        assert list(engine.voices) == ["rasoa-0", "rasoa-1"]
        assert engine.model_id == "test/vits-2spk"
        a = engine.synthesize("manao ahoana", "rasoa-0", 1.0, 1)
        b = engine.synthesize("manao ahoana", "rasoa-1", 1.0, 1)
        assert not (len(a) == len(b) and np.array_equal(a, b))
    finally:
        engine.close()


def test_missing_model_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="milo models demo"):
        VitsEngine(tmp_path / "nothing").load()
