"""Fixtures shared by every tier.

`demo_models`: the offline demo set (real engines, tiny or random-weight models), built once
and reused: $MILO_DEMO_MODELS if set, else ./models/demo. Building is idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_models() -> Path:
    from services.models.demo import build_demo

    dest = Path(os.environ.get("MILO_DEMO_MODELS", ROOT / "models" / "demo"))
    build_demo(dest)
    return dest
