"""Tier 1: addresses, flags, arrivals, payload files and speech chunks."""

from __future__ import annotations

import argparse
import json
import random
import sys
import wave
from pathlib import Path

import pytest

from services import cli as milo_cli
from services.loadtest.args import build_config
from services.loadtest.audio import Speech, read_wav
from services.loadtest.cli import parse_address
from services.loadtest.payloads import read_records, split_audio_files
from services.loadtest.runner import arrival_gaps

sys.path.insert(0, str(Path(__file__).parent))
from loadtest_fakes import write_wav


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:50052", "127.0.0.1:50052"),
        ("localhost:50050", "localhost:50050"),
        ("stt.internal:8080", "stt.internal:8080"),
        ("[::1]:50051", "[::1]:50051"),
    ],
)
def test_addresses_are_host_and_port(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "50052",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "dns:///127.0.0.1:50052",
        "http://host:80",
        "a:1,b:2",
        "host:port",
        "::1:50051",
        ":50051",
        "ho st:1",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="host:port"):
        parse_address(text)


def _args(*argv: str) -> argparse.Namespace:
    return milo_cli.build_parser().parse_args(["loadtest", *argv])


def test_defaults_are_bounded_and_target_the_local_default_port():
    cfg = build_config(_args("translate"), {})
    assert cfg.address == "127.0.0.1:50052"
    assert (cfg.shape.concurrency, cfg.shape.rate, cfg.shape.duration_s) == (1, None, 10.0)
    assert (cfg.limits.max_requests, cfg.limits.max_duration_s) == (10_000, 600.0)
    assert cfg.shape.timeout_s == 30.0 and cfg.ramp is None


def test_flags_become_the_configuration():
    cfg = build_config(
        _args(
            "llm",
            "-a",
            "10.0.0.5:9000",
            "--rate",
            "5",
            "--arrivals",
            "uniform",
            "-n",
            "40",
            "--max-tokens",
            "16",
            "--api-key",
            "k",
        ),
        {},
    )
    assert cfg.address == "10.0.0.5:9000"
    assert (cfg.shape.rate, cfg.shape.arrivals, cfg.shape.requests) == (5.0, "uniform", 40)
    assert cfg.shape.duration_s is None
    assert cfg.options.max_tokens == 16
    assert cfg.options.metadata == (("authorization", "Bearer k"),)
    env_key = build_config(_args("llm"), {"MILO_LOADTEST_API_KEY": "e"})
    assert env_key.options.metadata == (("authorization", "Bearer e"),)


@pytest.mark.parametrize(
    "argv",
    [
        ["tts", "--concurrency", "0"],
        ["tts", "--concurrency", "5000"],
        ["tts", "-c", "2", "-r", "1"],
        ["tts", "-d", "5", "-n", "5"],
        ["tts", "--address", "nowhere"],
        ["tts", "--max-duration", "0"],
        ["tts", "--timeout", "-1"],
        ["ftp"],
    ],
)
def test_bad_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        _args(*argv)
    assert stop.value.code == 2


def test_flags_that_do_not_go_together(tmp_path):
    with pytest.raises(ValueError, match="--slo"):
        build_config(_args("tts", "--ramp"), {})
    with pytest.raises(ValueError, match="drop --requests"):
        build_config(_args("tts", "--ramp", "--slo", "p95<1s", "-n", "5"), {})
    with pytest.raises(ValueError, match="no such file"):
        build_config(_args("tts", "--payload", str(tmp_path / "missing.txt")), {})
    with pytest.raises(ValueError, match="p95<500ms"):
        build_config(_args("tts", "--ramp", "--slo", "quick"), {})


def test_uniform_arrivals_are_evenly_spaced_and_poisson_ones_average_the_rate():
    gaps = arrival_gaps(4.0, "uniform", random.Random(0))
    assert [next(gaps) for _ in range(3)] == [0.25, 0.25, 0.25]
    poisson = arrival_gaps(4.0, "poisson", random.Random(7))
    draws = [next(poisson) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(0.25, rel=0.05)
    assert len(set(draws)) == len(draws)


def test_payload_files_jsonl_and_text(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"text": "Salama"}\n\n"just a string"\n', encoding="utf-8")
    assert read_records(jsonl) == [{"text": "Salama"}, "just a string"]
    text = tmp_path / "p.txt"
    text.write_text("# prompts\nManao ahoana?\n  \nVeloma.\n", encoding="utf-8")
    assert read_records(text) == ["Manao ahoana?", "Veloma."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_records(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no payloads"):
        read_records(empty)


def test_audio_files_and_folders(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    a, b = write_wav(folder / "a.wav"), write_wav(folder / "b.wav")
    single = write_wav(tmp_path / "c.wav")
    lines = tmp_path / "say.txt"
    lines.write_text("hello\n")
    assert split_audio_files([folder, single, lines]) == ([a, b, single], [lines])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \.wav files"):
        split_audio_files([empty])


def test_wav_reading_resampling_and_chunks(tmp_path):
    speech = read_wav(write_wav(tmp_path / "s.wav", seconds=0.5, rate=22050), 16000)
    assert speech.sample_rate == 16000 and speech.channels == 1
    assert speech.duration_s == pytest.approx(0.5, abs=0.01)
    chunks = Speech("x", b"\1\0" * 1000, 16000, 1).chunks(20)  # 320 samples a chunk
    assert [len(c) for c in chunks] == [640, 640, 640, 80]
    assert len(Speech("x", b"", 16000, 2).silence(100)) == 1600 * 4
    eight_bit = tmp_path / "8.wav"
    with wave.open(str(eight_bit), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(b"\x80" * 800)
    with pytest.raises(ValueError, match="16-bit PCM WAV is required"):
        read_wav(eight_bit)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        read_wav(junk)


def test_report_json_shape_is_what_compare_reads(tmp_path):
    from services.loadtest.cli import _read_old

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"tool": "milo loadtest", "sent": 1}))
    assert _read_old(path)["sent"] == 1
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="not a report written by milo loadtest"):
        _read_old(path)


def test_built_in_translate_sentences_are_new_to_the_services_phrase_cache():
    from services.loadtest.payloads import translate_sentences
    from services.translate.config import TranslateSettings

    sentences = translate_sentences()
    assert len(set(sentences)) >= 0.99 * len(sentences)
    assert len(sentences) > TranslateSettings.model_fields["cache_size"].default  # LRU: misses
    assert {(s, t) for _, s, t in sentences} == {("mg", "fr"), ("fr", "mg")}
    assert translate_sentences() == sentences  # the same load every run
