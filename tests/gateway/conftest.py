"""Fixtures of the gateway tests: `stack` is the session's demo stack (tests/conftest.py),
every service and the gateway started (tier 4)."""

from __future__ import annotations

import pytest
from stack import DemoStack


@pytest.fixture(scope="session")
def stack(demo_stack: DemoStack) -> DemoStack:
    return demo_stack.start()
