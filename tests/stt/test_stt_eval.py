"""Tier 2: `milo eval stt` against the servicer with a fake engine, so the expected WER and
CER are known exactly."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from services import cli
from services.runtime.server import ServiceHost
from services.stt.config import SttSettings
from services.stt.service import make_service

sys.path.insert(0, str(Path(__file__).parent))
from stt_support import EnergyDetector, FakeEngine, tone, write_wav

REFERENCES = {1.0: "Hello world", 1.5: "Manao ahoana, tompoko!", 2.0: "an'ny trano"}
HYPOTHESES = {1.0: "hello world", 1.5: "manao ahoana tompo", 2.0: "an ny trano"}


@pytest.fixture
async def address(tmp_path):
    settings = SttSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0, model_dir=tmp_path
    )
    engine = FakeEngine(texts=HYPOTHESES)
    host = ServiceHost(make_service(settings, engine, EnergyDetector), settings)
    await host.start()
    yield f"127.0.0.1:{host.port}"
    await host.stop(grace=0)


@pytest.fixture
def manifest(tmp_path) -> Path:
    lines = []
    for seconds, text in REFERENCES.items():
        clip = write_wav(tmp_path / f"clip{seconds}.wav", tone(seconds))
        lines.append(json.dumps({"audio": clip.name, "text": text}, ensure_ascii=False))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def eval_stt(*args: str) -> int:
    return await asyncio.to_thread(cli.main, ["eval", "stt", *args])


async def test_json_report_has_the_exact_corpus_wer_and_cer(address, manifest, capsys):
    assert await eval_stt("--manifest", str(manifest), "--address", address, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["wer"] == pytest.approx(1 / 8)  # one substitution in 2 + 3 + 3 words
    assert report["cer"] == pytest.approx(2 / 42)  # two deletions in 11 + 20 + 11 characters
    assert (report["utterances"], report["substitutions"], report["reference_words"]) == (3, 1, 8)
    assert [Path(w["audio"]).name for w in report["worst"]] == ["clip1.5.wav"]
    assert report["model"]["model_id"] == "fake-whisper" and report["model"]["language"] == "en"
    assert report["audio_seconds"] == pytest.approx(4.5)


async def test_text_report_prints_wer_cer_and_the_worst_utterance(address, manifest, capsys):
    assert await eval_stt("--manifest", str(manifest), "--address", address) == 0
    out = capsys.readouterr().out
    assert "WER  12.50%" in out and "CER   4.76%" in out
    assert "ref: Manao ahoana, tompoko!" in out and "hyp: manao ahoana tompo" in out


async def test_bad_manifest_and_unreachable_service_exit_nonzero_with_a_reason(
    address, manifest, tmp_path, capsys
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "nowhere.wav", "text": "x"}\n')
    assert await eval_stt("--manifest", str(bad), "--address", address) == 2
    assert "nowhere.wav not found" in capsys.readouterr().err
    assert (
        await eval_stt("--manifest", str(manifest), "--address", "127.0.0.1:9", "--timeout", "1")
        == 1
    )
    assert "127.0.0.1:9 answered" in capsys.readouterr().err
    assert (
        await eval_stt("--manifest", str(manifest), "--address", address, "--language", "fr") == 1
    )
    assert "English-only" in capsys.readouterr().err
