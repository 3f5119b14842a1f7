"""`milo models list`: id, size, compute type and licence per model; non-commercial flagged
(tier 1 on the demo set and on manifests the tests write)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from services.cli import main
from services.models.licences import from_model_card, licence_of, non_commercial
from services.models.listing import format_rows, list_models


def test_demo_set_rows(demo_models: Path) -> None:
    rows = {r.component: r for r in list_models(demo_models)}
    assert all(r.present and r.demo and r.size_bytes > 0 for r in rows.values())
    assert rows["stt"].licence == "mit" and rows["translate"].licence == "apache-2.0"
    assert rows["llm"].compute_type not in ("-", "unreadable")
    assert not any(r.non_commercial for r in rows.values())


def test_real_models_are_flagged_non_commercial(demo_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(demo_models / "translate", root / "translate")
    shutil.copytree(demo_models / "tts", root / "tts")
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "translate": {
                    "id": "facebook/nllb-200-distilled-600M",
                    "quantization": "int8_float16",
                },
                "tts": {"id": "/home/me/mms-tts-mlg-finetuned"},
            }
        ),
        "utf-8",
    )
    (root / "tts" / "README.md").unlink(missing_ok=True)
    (root / "tts" / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# voice\n", "utf-8")
    rows = {r.component: r for r in list_models(root)}
    assert rows["translate"].licence == "cc-by-nc-4.0" and rows["translate"].non_commercial
    assert rows["translate"].compute_type == "int8_float16"
    assert rows["tts"].licence == "cc-by-nc-4.0" and rows["tts"].non_commercial
    assert not rows["stt"].present and not rows["llm"].present
    table = format_rows(list(rows.values()))
    assert table.count("NON-COMMERCIAL") == 2 and "not for commercial use" in table


def test_licence_sources_in_order(tmp_path: Path) -> None:
    assert licence_of({"id": "facebook/mms-tts-mlg", "license": "custom"}, tmp_path) == "custom"
    assert licence_of({"id": "openai/whisper-medium"}, tmp_path) == "apache-2.0"
    assert licence_of({"id": "someone/unknown"}, tmp_path) == "unknown"
    (tmp_path / "README.md").write_text("---\nlanguage: mg\nlicense: 'mit'\n---\n", "utf-8")
    assert from_model_card(tmp_path) == "mit"
    assert non_commercial("cc-by-nc-sa-4.0") and not non_commercial("apache-2.0")


def test_list_command(demo_models: Path, capsys) -> None:
    assert main(["models", "list", "--dir", str(demo_models), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["component"] for r in rows] == ["stt", "translate", "llm", "tts"]
    assert main(["models", "list", "--dir", str(demo_models)]) == 0
    assert "licence" in capsys.readouterr().out
