"""Fixtures of the gateway tests: `stack` is the whole demo stack (tier 4), started once for
every module that needs it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from demo_stack import Stack


@pytest.fixture(scope="session")
def stack(demo_models: Path) -> Iterator[Stack]:
    s = Stack(demo_models)
    try:
        s.start()
        yield s
    finally:
        s.stop()
