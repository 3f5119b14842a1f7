"""Fixtures shared by every tier, and the tier markers.

Tiers (see README.md): `tier1` pure logic; `tier2` a servicer on a real gRPC server in this
process (port 0), with fakes; `tier3` a real engine on its tiny demo model, or a service in
its own process; `tier4` the whole stack. Each test gets its marker from its kind, read off
what it uses (`tier_of`): `make test-fast` runs `-m "tier1 or tier2"`, `make test` all.

`demo_models`: the offline demo set (real engines, tiny or random-weight models), built once
and reused: $MILO_DEMO_MODELS if set, else ./models/demo. Building is idempotent.
`demo_stack`: one stack on the demo set for the whole session (tests/stack.py), started
service by service as tests ask for them; tests that share it must leave it as they found
it (a test that stops or reconfigures a service starts its own process for it).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from stack import DemoStack  # noqa: E402 (tests/ is on the path from here on)

TIERS = ("tier1", "tier2", "tier3", "tier4")
# What a test's code (or a fixture it uses) mentions, and the tier that makes it.
_OWN_PROCESS = ("ServiceProcess", "subprocess.", "Popen(", "DemoStack(")
_IN_PROCESS_SERVER = (
    "ServiceHost(",
    "grpc.aio.server(",
    "grpc.server(",
    "HTTPServer(",
    "uvicorn.",
    "start_fakes(",
    "serve(",
)


@pytest.fixture(scope="session")
def demo_models() -> Path:
    from services.models.demo import build_demo
    from services.runtime.model_folder import demo_models_dir

    dest = ROOT / demo_models_dir()  # $MILO_DEMO_MODELS, else ./models/demo
    build_demo(dest)
    return dest


@pytest.fixture(scope="session")
def demo_stack(demo_models: Path) -> Iterator[DemoStack]:
    """The session's stack on the demo models; each service starts when first asked for."""
    stack = DemoStack(demo_models)
    try:
        yield stack
    finally:
        stack.stop()


def _sources(item: pytest.Function) -> Iterator[str]:
    yield _source(item.function)
    for defs in item._fixtureinfo.name2fixturedefs.values():
        for fixturedef in defs:
            yield _source(fixturedef.func)


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def tier_of(item: pytest.Function) -> str:
    """tier4: uses `demo_stack`; tier3: uses `demo_models` or starts a process; tier2:
    starts a server in this process; tier1: the rest. An explicit tier marker wins."""
    explicit = [m.name for m in item.iter_markers() if m.name in TIERS]
    if explicit:
        return explicit[0]
    names = set(item.fixturenames)
    if "demo_stack" in names:
        return "tier4"
    code = "\n".join(_sources(item))
    if "demo_models" in names or any(sign in code for sign in _OWN_PROCESS):
        return "tier3"
    if any(sign in code for sign in _IN_PROCESS_SERVER):
        return "tier2"
    return "tier1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function):
            tier = tier_of(item)
            if not item.get_closest_marker(tier):
                item.add_marker(tier)
            if tier in ("tier3", "tier4") and not item.get_closest_marker("slow"):
                item.add_marker("slow")
