"""`milo models list`: what is in the models folder, and under which licence.

One row per component: model id, size on disk, compute type (CTranslate2 quantization,
the GGUF's file type, the VITS dtype), licence, and a flag on non-commercial licences.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.models.layout import COMPONENTS, Component, Layout, read_manifest
from services.models.licences import licence_of, non_commercial


@dataclass(frozen=True)
class ModelRow:
    """One component's model. size_bytes: the entry folder's files (0 when absent)."""

    component: Component
    present: bool
    model_id: str
    size_bytes: int
    compute_type: str
    licence: str
    non_commercial: bool
    demo: bool


def list_models(root: Path) -> list[ModelRow]:
    """A row per component, present or not, in the order stt, translate, llm, tts."""
    manifest, layout = read_manifest(root), Layout(root)
    rows = []
    for component in COMPONENTS:
        found = manifest.get(component)
        entry: dict[str, Any] = found if isinstance(found, dict) else {}
        folder = layout.entry_dir(component)
        present = folder.is_dir() and not layout.missing_files(component)
        licence = licence_of(entry, folder) if present else "-"
        rows.append(
            ModelRow(
                component=component,
                present=present,
                model_id=str(entry.get("id") or (folder.name if present else "-")),
                size_bytes=_size(folder),
                compute_type=_compute_type(component, entry, layout),
                licence=licence,
                non_commercial=present and non_commercial(licence),
                demo=bool(entry.get("demo")),
            )
        )
    return rows


def _size(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _compute_type(component: Component, entry: dict[str, Any], layout: Layout) -> str:
    if component in ("stt", "translate"):
        return str(entry.get("quantization") or "float32 (as converted)")
    if component == "llm":
        return _gguf_file_type(layout.llm)
    try:
        config = json.loads((layout.tts / "config.json").read_text(encoding="utf-8"))
        return str(config.get("torch_dtype") or config.get("dtype") or "float32")
    except (OSError, ValueError):
        return "-"


def _gguf_file_type(path: Path) -> str:
    if not path.is_file():
        return "-"
    try:
        from gguf import LlamaFileType

        from services.doctor.models import gguf_metadata

        value = gguf_metadata(path).get("general.file_type")
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_") if value is not None else "-"
    except Exception:  # unreadable GGUF: `milo doctor` says why
        return "unreadable"


def format_rows(rows: list[ModelRow]) -> str:
    """A table a person reads, then a warning line per non-commercial model."""
    head = f"{'':10} {'model':<40} {'size':>9}  {'compute type':<22} licence"
    lines = [head]
    for r in rows:
        size = f"{r.size_bytes / 1024**2:.1f} MiB" if r.present else "-"
        flag = "  NON-COMMERCIAL" if r.non_commercial else ""
        model = r.model_id if r.present else "(missing)"
        lines.append(
            f"{r.component:<10} {model:<40} {size:>9}  {r.compute_type:<22} {r.licence}{flag}"
        )
    for r in rows:
        if r.non_commercial:
            lines.append(
                f"note: {r.component} ({r.model_id}) is {r.licence}: not for "
                "commercial use without the licensor's permission"
            )
    return "\n".join(lines)


def rows_json(rows: list[ModelRow]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts, one per component, with ModelRow's field names."""
    return [asdict(r) for r in rows]
