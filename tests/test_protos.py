"""The wire API: protos/ pass buf lint, and the installed stubs match what protos/ generates."""

from __future__ import annotations

import filecmp
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import milo

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def test_buf_lint_passes():
    result = subprocess.run([_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_installed_stubs_match_protos(tmp_path):
    generate = runpy.run_path(str(ROOT / "protos" / "generate.py"))["generate"]
    generate(tmp_path)
    fresh = _files(tmp_path / "milo")
    installed = _files(Path(milo.__file__).parent)
    assert sorted(fresh) == sorted(installed), "stub files differ: reinstall (pip install -e .)"
    stale = [name for name, path in fresh.items() if not filecmp.cmp(path, installed[name], False)]
    assert not stale, f"stubs drifted from protos/ ({stale}): reinstall (pip install -e .)"
    assert any(name.endswith("_pb2.pyi") for name in fresh)  # typed stubs are generated


def test_every_service_has_describe_and_the_contract_names():
    from milo.gateway.v1 import gateway_pb2
    from milo.llm.v1 import llm_pb2
    from milo.stt.v1 import stt_pb2
    from milo.translate.v1 import translate_pb2
    from milo.tts.v1 import tts_pb2

    contract = {
        (stt_pb2, "Stt"): {"Describe", "Recognize", "StreamingRecognize"},
        (translate_pb2, "Translator"): {"Describe", "Translate"},
        (llm_pb2, "Llm"): {"Describe", "Chat"},
        (tts_pb2, "Tts"): {"Describe", "Synthesize"},
        (gateway_pb2, "Conversation"): {
            "Describe",
            "Converse",
            "Transcribe",
            "Translate",
            "Chat",
            "Speak",
        },
    }
    for (module, name), methods in contract.items():
        service = module.DESCRIPTOR.services_by_name[name]
        assert {m.name for m in service.methods} == methods, name
