"""`milo models fetch|convert` against a local fake hub serving small real model files."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from models_fake_hub import FakeHub

from services.models import fetch
from services.models.convert import WHISPER_REQUIRED_FILES
from services.models.demo_stt import source_dir
from services.models.demo_translate import save_hf_nllb
from services.models.fetch import Hub
from services.models.layout import Layout

pytest.importorskip("huggingface_hub")
pytest.importorskip("ctranslate2")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

WHISPER_TINY_EN_VOCAB = 51864  # the tokenizer we borrow is tiny.en's (English only)


def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file()}


def _tiny_whisper(dest: Path) -> Path:
    """A random whisper-architecture checkpoint with tiny.en's real tokenizer."""
    tokenizer = transformers.WhisperTokenizerFast(
        tokenizer_file=str(source_dir() / "tokenizer.json")
    )
    tokenizer.save_pretrained(str(dest))
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(str(dest))
    config = transformers.WhisperConfig(
        vocab_size=WHISPER_TINY_EN_VOCAB,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=50256,
        bos_token_id=50256,
        eos_token_id=50256,
        decoder_start_token_id=50257,
    )
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        suppress_tokens=[],
        begin_suppress_tokens=[220, 50256],
        max_length=448,
    )
    model.save_pretrained(str(dest))
    return dest


@pytest.fixture(scope="module")
def hub_repos(
    fake_hub_server: FakeHub, demo_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Fill the fake hub with the four default repositories (plus decoys never to fetch)."""
    root = tmp_path_factory.mktemp("fake-repos")
    decoy = root / "decoy.bin"
    decoy.write_bytes(b"not to be downloaded")
    nllb = save_hf_nllb(root / "nllb")
    whisper = _tiny_whisper(root / "whisper")
    layout = Layout(demo_models)
    extra = {"README.md": decoy, ".gitattributes": decoy, "onnx/model.onnx": decoy}
    fake_hub_server.add(fetch.NLLB_REPO, {**_files(nllb), "pytorch_model.bin": decoy, **extra})
    fake_hub_server.add(fetch.WHISPER_REPO, {**_files(whisper), "flax_model.msgpack": decoy})
    fake_hub_server.add(
        fetch.LLM_REPO, {fetch.LLM_FILENAME: layout.llm, "Mistral-7B-Q8_0.gguf": decoy}
    )
    fake_hub_server.add(fetch.MMS_REPO, {**_files(layout.tts), **extra})
    return {"nllb": nllb, "whisper": whisper}


@pytest.fixture
def hub(fake_hub: FakeHub, hub_repos: dict[str, Path], tmp_path: Path) -> Hub:
    return Hub(cache_dir=tmp_path / "hf-cache")


def test_select_repo_files_prefers_safetensors_and_skips_the_rest() -> None:
    files = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tf_model.h5",
        "README.md",
        "onnx/encoder.onnx",
        "sentencepiece.bpe.model",
        "merges.txt",
        "trainer_state.json",
    ]
    assert fetch.select_repo_files(files) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "sentencepiece.bpe.model",
    ]
    assert "pytorch_model.bin" in fetch.select_repo_files(["config.json", "pytorch_model.bin"])


def test_fetch_translate_converts_nllb(fake_hub: FakeHub, hub: Hub, tmp_path: Path) -> None:
    ct2 = pytest.importorskip("ctranslate2")
    spm = pytest.importorskip("sentencepiece")
    root = tmp_path / "models"
    manifest = fetch.prepare_translate(root, hub=hub, echo=lambda line: None)

    entry = manifest["translate"]
    assert entry["id"] == fetch.NLLB_REPO and entry["demo"] is False
    assert entry["quantization"] == "int8_float16"
    assert entry["source"] == f"hf:{fetch.NLLB_REPO}@{FakeHub.commit(fetch.NLLB_REPO)}"
    assert "pytorch_model.bin" not in fake_hub.downloaded(fetch.NLLB_REPO)
    assert "README.md" not in fake_hub.downloaded(fetch.NLLB_REPO)

    folder = Layout(root).translate
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    translator = ct2.Translator(str(folder), device="cpu")
    source = [["plt_Latn", *sp.encode("Salama tompoko.", out_type=str), "</s>"]]
    result = translator.translate_batch(source, target_prefix=[["fra_Latn"]], max_decoding_length=8)
    assert result[0].hypotheses[0][0] == "fra_Latn"

    fake_hub.requests.clear()
    lines: list[str] = []
    fetch.prepare_translate(root, hub=hub, echo=lines.append)
    assert "up to date" in lines[0] and fake_hub.requests == []


def test_fetch_stt_checkpoint_takes_missing_files_from_base(
    fake_hub: FakeHub, hub: Hub, hub_repos: dict[str, Path], tmp_path: Path, hello_wav: Path
) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    checkpoint = tmp_path / "whisper-mg-v1" / "checkpoint-7000"
    checkpoint.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(hub_repos["whisper"] / name, checkpoint / name)
    (checkpoint / "trainer_state.json").write_text("{}")
    root = tmp_path / "models"

    manifest = fetch.prepare_stt(root, str(checkpoint), hub=hub, echo=lambda line: None)

    assert manifest["stt"]["base"] == fetch.WHISPER_REPO
    assert manifest["stt"]["source"] == f"local:{checkpoint.resolve()}"
    assert set(WHISPER_REQUIRED_FILES) <= fake_hub.downloaded(fetch.WHISPER_REPO)
    assert "model.safetensors" not in fake_hub.downloaded(fetch.WHISPER_REPO)
    stt = Layout(root).stt
    assert (stt / "tokenizer.json").is_file() and (stt / "preprocessor_config.json").is_file()
    model = faster_whisper.WhisperModel(str(stt), device="cpu", compute_type="int8")
    segments, info = model.transcribe(
        str(hello_wav), language="en", beam_size=1, temperature=0.0, without_timestamps=True
    )
    assert all(isinstance(segment.text, str) for segment in segments)
    assert 0.5 < info.duration < 3.0


def test_fetch_stt_from_hub(fake_hub: FakeHub, hub: Hub, tmp_path: Path) -> None:
    root = tmp_path / "models"
    manifest = fetch.prepare_stt(root, hub=hub, echo=lambda line: None)
    assert manifest["stt"]["id"] == fetch.WHISPER_REPO and manifest["stt"]["base"] is None
    assert "flax_model.msgpack" not in fake_hub.downloaded(fetch.WHISPER_REPO)
    assert Layout(root).missing_files("stt") == []


def test_fetch_llm_downloads_only_the_named_gguf(
    fake_hub: FakeHub, hub: Hub, demo_models: Path, tmp_path: Path
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    root = tmp_path / "models"
    manifest = fetch.prepare_llm(root, hub=hub, echo=lambda line: None)

    assert manifest["llm"]["id"] == f"{fetch.LLM_REPO}/{fetch.LLM_FILENAME}"
    assert fake_hub.downloaded(fetch.LLM_REPO) == {fetch.LLM_FILENAME}
    assert Layout(root).llm.read_bytes() == Layout(demo_models).llm.read_bytes()
    assert sorted(p.name for p in Layout(root).llm_dir.iterdir()) == ["model.gguf"]
    llm = llama_cpp.Llama(model_path=str(Layout(root).llm), n_ctx=256, n_threads=1, verbose=False)
    out = llm.create_completion("Salama", max_tokens=4)
    assert out["usage"]["completion_tokens"] == 4


def test_fetch_tts_from_hub(fake_hub: FakeHub, hub: Hub, tmp_path: Path) -> None:
    root = tmp_path / "models"
    fetch.prepare_tts(root, hub=hub, echo=lambda line: None)
    folder = str(Layout(root).tts)
    model = transformers.VitsModel.from_pretrained(folder).eval()
    tokenizer = transformers.VitsTokenizer.from_pretrained(folder)
    with torch.no_grad():
        wave = model(**tokenizer("Veloma e!", return_tensors="pt")).waveform
    assert wave.ndim == 2 and wave.shape[-1] > 0


def test_unknown_repository_is_a_fetch_error(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match="nobody/nothing"):
        fetch.prepare_tts(tmp_path, "nobody/nothing", hub=hub, echo=lambda line: None)


def test_unreachable_hub_is_a_fetch_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub retries a refused connection 5 times with backoff (about 25 s of sleep):
    # skip the sleeping, keep the retries.
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    hub = Hub(endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "cache")
    with pytest.raises(fetch.FetchError, match="cannot download"):
        fetch.prepare_translate(tmp_path, hub=hub, echo=lambda line: None)
