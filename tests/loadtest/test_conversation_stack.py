"""Tier 4: `milo loadtest conversation` against the gateway over the demo stack, at 1 and 4
people at once (typed turns: on a shared CPU the demo's speech recognition is the slow part,
and this test is about the tool)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_conversations_at_1_and_4_clients_on_the_demo_stack(demo_stack):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "loadtest",
            "conversation",
            "-a",
            demo_stack.gateway.address,
            "--clients",
            "1,4",
            "--turns",
            "1",
            "--text-input",
            "--think-time",
            "0.2",
            "--warmup-turns",
            "0",
            "--max-tokens",
            "24",
            "--timeout",
            "150",
            "--slo",
            "first_audio.p95<60s",
            "--json",
            "-",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [lv["clients"] for lv in doc["levels"]] == [1, 4]
    for level in doc["levels"]:
        assert level["turns"] == level["clients"]
        assert level["succeeded"] + level["failed"] == level["turns"]
        assert sum(level["errors"].values()) == level["failed"]
        if level["succeeded"]:
            assert level["first_audio_ms"]["p50"] > 0 and level["reply_audio_s"] > 0
            assert "llm_first_token" in level["stages_ms"]
    assert sum(lv["succeeded"] for lv in doc["levels"]) >= 1
    assert "largest level meeting first_audio.p95 < 60000 ms" in out.stderr
