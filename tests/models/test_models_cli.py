"""`milo models ...` as registered by services.models.cli.add_commands, and layout helpers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from models_fake_hub import FakeHub

from services.models._util import MissingDependencyError, require
from services.models.cli import add_commands
from services.models.layout import (
    Layout,
    default_demo_dir,
    default_models_dir,
    read_manifest,
    record_entry,
)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="milo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_default_dirs_follow_the_environment() -> None:
    assert default_models_dir({}) == Path("models")
    assert default_models_dir({"MILO_MODELS_DIR": "/srv/milo"}) == Path("/srv/milo")
    assert default_demo_dir({}) == Path("models/demo")
    assert default_demo_dir({"MILO_DEMO_MODELS": "/tmp/demo"}) == Path("/tmp/demo")


def test_layout_paths_and_manifest_entries(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.llm == tmp_path / "llm" / "model.gguf"
    assert layout.entry_dir("llm") == tmp_path / "llm"
    assert layout.missing_files("translate") == [
        "model.bin",
        "config.json",
        "sentencepiece.bpe.model",
    ]
    record_entry(tmp_path, "stt", {"id": "x", "demo": False})
    assert read_manifest(tmp_path)["stt"]["created"]


def test_demo_command_reports_up_to_date(
    demo_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("models", "demo", "--dir", str(demo_models)) == 0
    assert "up to date" in capsys.readouterr().out


def test_convert_command_installs_local_folders(demo_models: Path, tmp_path: Path) -> None:
    demo = Layout(demo_models)
    root = tmp_path / "models"
    assert _run("models", "convert", "tts", str(demo.tts), "--dir", str(root)) == 0
    assert _run("models", "convert", "llm", str(demo.llm), "--dir", str(root)) == 0
    manifest = read_manifest(root)
    assert manifest["tts"]["source"] == f"local:{demo.tts.resolve()}"
    assert manifest["llm"]["demo"] is False
    assert Layout(root).missing_files("tts") == [] and Layout(root).llm.is_file()


def test_convert_command_needs_an_existing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("models", "convert", "stt", str(tmp_path / "nope"), "--dir", str(tmp_path)) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _run("models", "convert", "llm", str(tmp_path), "--dir", str(tmp_path)) == 1
    assert ".gguf file" in capsys.readouterr().err


def test_fetch_command_uses_hf_endpoint(
    fake_hub: FakeHub, demo_models: Path, tmp_path: Path
) -> None:
    fake_hub.add("someone/tiny-gguf", {"tiny.gguf": Layout(demo_models).llm})
    root = tmp_path / "models"
    argv = ["models", "fetch", "--only", "llm", "--dir", str(root)]
    assert _run(*argv, "--llm-repo", "someone/tiny-gguf", "--llm-file", "tiny.gguf") == 0
    assert read_manifest(root)["llm"]["id"] == "someone/tiny-gguf/tiny.gguf"
    assert fake_hub.downloaded("someone/tiny-gguf") == {"tiny.gguf"}


def test_fetch_command_reports_hub_errors(
    fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["models", "fetch", "--only", "tts", "--tts", "nobody/nothing", "--dir", str(tmp_path)]
    assert _run(*argv) == 1
    assert "nobody/nothing" in capsys.readouterr().err


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(SystemExit):
        _run("models")
    with pytest.raises(SystemExit):
        _run("models", "fetch", "--mt-quantization", "int3")


def test_missing_library_says_what_to_install() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'milo\[models\]'"):
        require("surely_not_an_installed_module")
