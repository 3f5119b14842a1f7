"""Tier 1: deploy/install.sh's choices per extra and device, with a stand-in python that
records each pip command (the CUDA branches cannot run here; what they would run can be
checked)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from deploy_files import DEPLOY

SCRIPT = DEPLOY / "install.sh"
FAKE_PYTHON = """#!/bin/sh
echo "$* | CMAKE_ARGS=${CMAKE_ARGS:-}" >> "$FAKE_LOG"
"""


def run(tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.write_text("")
    knobs = ("CMAKE_ARGS", "TORCH_INDEX_URL", "TORCH_SPEC", "PIP_INSTALL_ARGS")
    base = {k: v for k, v in os.environ.items() if k not in knobs}
    full_env = {**base, "PYTHON": str(fake), "FAKE_LOG": str(log), **env}
    result = subprocess.run(
        ["sh", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=30
    )
    return result.returncode, log.read_text().splitlines()


def test_cpu_tts_takes_cpu_torch_first_then_the_extra(tmp_path: Path):
    code, calls = run(tmp_path, "tts", "cpu", "/src")
    assert code == 0
    assert calls == [
        "-m pip install --no-input --index-url https://download.pytorch.org/whl/cpu torch "
        "| CMAKE_ARGS=",
        "-m pip install --no-input /src[tts] | CMAKE_ARGS=",
        "-m pip check | CMAKE_ARGS=",
    ]


def test_cuda_tts_takes_cuda_torch_and_ci_knobs_replace_index_and_spec(tmp_path: Path):
    for unset in ({}, {"TORCH_INDEX_URL": ""}):
        _, calls = run(tmp_path, "tts", "cuda", **unset)
        assert "--index-url https://download.pytorch.org/whl/cu128 torch" in calls[0]
    _, calls = run(
        tmp_path,
        "tts",
        "cpu",
        TORCH_INDEX_URL="pypi",
        TORCH_SPEC="torch==2.13.0",
        PIP_INSTALL_ARGS="--constraint c.txt",
    )
    assert calls[0] == "-m pip install --no-input --constraint c.txt torch==2.13.0 | CMAKE_ARGS="
    assert calls[1].startswith("-m pip install --no-input --constraint c.txt .[tts]")


def test_cuda_llm_compiles_llama_cpp_with_cuda_for_the_chosen_gpus(tmp_path: Path):
    _, calls = run(tmp_path, "llm", "cuda", CUDA_ARCHITECTURES="89;120")
    (install, _check) = calls
    assert install.startswith("-m pip install --no-input .[llm] | CMAKE_ARGS=")
    assert "-DGGML_CUDA=on" in install and "-DCMAKE_CUDA_ARCHITECTURES=89;120" in install
    _, calls = run(tmp_path, "llm", "cpu")
    assert calls[0] == "-m pip install --no-input .[llm] | CMAKE_ARGS="
    _, calls = run(tmp_path, "llm", "cuda", CMAKE_ARGS="-DGGML_CUDA=on -DX=1")
    assert calls[0].endswith("CMAKE_ARGS=-DGGML_CUDA=on -DX=1"), "given flags are kept"


@pytest.mark.parametrize("extra", ["stt", "translate", "gateway"])
def test_other_extras_install_only_themselves(tmp_path: Path, extra: str):
    code, calls = run(tmp_path, extra, "cuda", ".")
    assert code == 0
    assert calls == [
        f"-m pip install --no-input .[{extra}] | CMAKE_ARGS=",
        "-m pip check | CMAKE_ARGS=",
    ]


@pytest.mark.parametrize("args", [[], ["stt"], ["models", "cpu"], ["stt", "rocm"]])
def test_bad_arguments_exit_2_with_usage_and_install_nothing(tmp_path: Path, args: list[str]):
    code, calls = run(tmp_path, *args)
    assert code == 2
    assert calls == []
