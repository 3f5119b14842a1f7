"""The demo set: each model loads in its real engine and returns results of the right kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.models.demo import DEMO_VERSION, NotADemoSetError, build_demo
from services.models.layout import COMPONENTS, Layout, read_manifest, write_manifest

MALAGASY = "Manao ahoana ianao? Tonga soa eto Madagasikara."


def test_manifest_describes_every_demo_model(demo_models: Path) -> None:
    manifest = read_manifest(demo_models)
    layout = Layout(demo_models)
    for component in COMPONENTS:
        entry = manifest[component]
        assert entry["demo"] is True
        assert entry["version"] == DEMO_VERSION
        assert entry["id"] and entry["source"] and entry["created"]
        assert layout.missing_files(component) == []
    assert manifest["stt"]["languages"] == ["en"]


def test_second_build_is_a_no_op(demo_models: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo_models.rglob("*") if p.is_file()}
    lines: list[str] = []
    build_demo(demo_models, echo=lines.append)
    assert len(lines) == 1
    assert "up to date" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in demo_models.rglob("*") if p.is_file()} == before


def test_outdated_or_incomplete_entries_are_rebuilt(tmp_path: Path) -> None:
    build_demo(tmp_path, components=["llm"], echo=lambda line: None)
    manifest = read_manifest(tmp_path)
    manifest["llm"]["version"] = DEMO_VERSION - 1
    write_manifest(tmp_path, manifest)
    lines: list[str] = []
    build_demo(tmp_path, components=["llm"], echo=lines.append)
    assert any("building demo llm" in line for line in lines)
    assert read_manifest(tmp_path)["llm"]["version"] == DEMO_VERSION

    Layout(tmp_path).llm.unlink()
    build_demo(tmp_path, components=["llm"], echo=lines.append)
    assert Layout(tmp_path).llm.is_file()


def test_refuses_to_overwrite_real_models(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"llm": {"id": "real", "demo": False}})
    with pytest.raises(NotADemoSetError, match="real models"):
        build_demo(tmp_path, components=["llm"], echo=lambda line: None)


def test_stt_transcribes_espeak_speech(demo_models: Path, hello_wav: Path) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    model = faster_whisper.WhisperModel(
        str(Layout(demo_models).stt), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, info = model.transcribe(str(hello_wav), beam_size=1, language="en")
    text = " ".join(segment.text for segment in segments).lower()
    assert "hello" in text
    assert 0.5 < info.duration < 3.0


def test_translate_vocabulary_knows_nllb_codes_and_pieces(demo_models: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    folder = Layout(demo_models).translate
    vocab = set(json.loads((folder / "shared_vocabulary.json").read_text("utf-8")))
    assert {"plt_Latn", "fra_Latn", "eng_Latn", "zul_Latn", "</s>", "<unk>"} <= vocab
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_control(i)}
    assert pieces - {"<unk>"} <= vocab


def test_translate_batch_returns_tokens(demo_models: Path) -> None:
    ct2 = pytest.importorskip("ctranslate2")
    spm = pytest.importorskip("sentencepiece")
    folder = Layout(demo_models).translate
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    texts = [MALAGASY, "Misaotra betsaka.", "Veloma!"]
    source = [["plt_Latn", *sp.encode(t, out_type=str), "</s>"] for t in texts]
    translator = ct2.Translator(str(folder), device="cpu", intra_threads=2)
    results = translator.translate_batch(
        source, target_prefix=[["fra_Latn"]] * len(texts), max_decoding_length=24, beam_size=2
    )
    assert len(results) == len(texts)
    assert len({tuple(result.hypotheses[0]) for result in results}) > 1  # depends on input
    for result in results:
        tokens = result.hypotheses[0]
        assert tokens[0] == "fra_Latn"
        assert len(tokens) > 1
        assert not any(token.endswith("_Latn") for token in tokens[1:])
        assert isinstance(sp.decode(tokens[1:]), str)


def test_llm_streams_a_chat_reply_until_max_tokens(demo_models: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(
        model_path=str(Layout(demo_models).llm), n_ctx=512, n_threads=1, seed=1, verbose=False
    )
    assert "[INST]" in llm.metadata["tokenizer.chat_template"]
    messages = [
        {"role": "system", "content": "Réponds en français."},
        {"role": "user", "content": "Bonjour, comment ça va ?"},
    ]
    chunks = list(llm.create_chat_completion(messages=messages, stream=True, max_tokens=32))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) >= 16
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert text.strip()


def test_tts_synthesizes_a_deterministic_waveform(demo_models: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = str(Layout(demo_models).tts)
    model = transformers.VitsModel.from_pretrained(folder).eval()
    tokenizer = transformers.VitsTokenizer.from_pretrained(folder)
    inputs = tokenizer(MALAGASY, return_tensors="pt")
    waves = []
    for _ in range(2):
        transformers.set_seed(7)
        with torch.no_grad():
            waves.append(model(**inputs).waveform)
    wave = waves[0]
    assert wave.dtype == torch.float32 and wave.ndim == 2 and wave.shape[0] == 1
    seconds = wave.shape[-1] / model.config.sampling_rate
    assert model.config.sampling_rate == 16_000
    assert 1.0 < seconds < 10.0
    assert 0.0 < float(wave.abs().max()) <= 1.0
    assert torch.equal(waves[0], waves[1])


def test_tts_without_noise_needs_no_seed(demo_models: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.VitsModel.from_pretrained(str(Layout(demo_models).tts)).eval()
    tokenizer = transformers.VitsTokenizer.from_pretrained(str(Layout(demo_models).tts))
    model.noise_scale = model.noise_scale_duration = 0.0
    inputs = tokenizer("Veloma!", return_tensors="pt")
    with torch.no_grad():
        first = model(**inputs).waveform
        torch.manual_seed(1234)
        second = model(**inputs).waveform
    assert torch.equal(first, second)
