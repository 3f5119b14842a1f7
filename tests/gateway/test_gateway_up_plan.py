"""Tier 1: what `milo up` gives the processes it starts (gateway/up.py `plan`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.up import plan


def test_the_services_wait_passively_for_work_unless_the_operator_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    children = plan(tmp_path, "127.0.0.1", None, base_port=0)
    assert [c.name for c in children] == ["stt", "translate", "llm", "tts", "gateway"]
    assert {c.env["OMP_WAIT_POLICY"] for c in children} == {"PASSIVE"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert {c.env["OMP_WAIT_POLICY"] for c in plan(tmp_path, "127.0.0.1", None, 0)} == {"ACTIVE"}


def test_metrics_listen_on_the_services_address_unless_the_operator_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("STT", "TRANSLATE", "LLM", "TTS", "GATEWAY"):
        monkeypatch.delenv(f"MILO_{name}_METRICS_HOST", raising=False)
    children = plan(tmp_path, "127.0.0.1", None, base_port=0)
    assert {c.env[f"MILO_{c.name.upper()}_METRICS_HOST"] for c in children} == {"127.0.0.1"}
    monkeypatch.setenv("MILO_LLM_METRICS_HOST", "0.0.0.0")
    llm = next(c for c in plan(tmp_path, "127.0.0.1", None, 0) if c.name == "llm")
    assert llm.env["MILO_LLM_METRICS_HOST"] == "0.0.0.0"
