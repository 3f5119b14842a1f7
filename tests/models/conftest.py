"""Fixtures of the model-preparation tests: the demo set, a speech clip, a local fake hub.

`demo_models` here shadows the suite-wide one of tests/conftest.py: these tests build their
own set in a temporary folder (or reuse $MILO_DEMO_MODELS), never in ./models.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from models_fake_hub import FakeHub, serve

from services.models.demo import build_demo


@pytest.fixture(scope="session")
def fake_hub_server() -> Iterator[FakeHub]:
    with serve(FakeHub()) as hub:
        yield hub


@pytest.fixture
def fake_hub(fake_hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The session's fake hub, with HF_ENDPOINT pointing at it (read by fetch at call time).

    huggingface_hub reads its cache location once, at import: tests pass
    `Hub(cache_dir=...)` instead of setting HF_HUB_CACHE.
    """
    monkeypatch.setenv("HF_ENDPOINT", fake_hub_server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake_hub_server.requests.clear()
    return fake_hub_server


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo set, built once per session (into $MILO_DEMO_MODELS when it is set)."""
    env = os.environ.get("MILO_DEMO_MODELS", "").strip()
    root = Path(env) if env else tmp_path_factory.mktemp("demo-models")
    build_demo(root, echo=lambda line: None)
    return root


@pytest.fixture(scope="session")
def hello_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'hello world' spoken by espeak-ng (skips when espeak-ng is not installed)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp_path_factory.mktemp("speech") / "hello.wav"
    subprocess.run([espeak, "-w", str(wav), "hello world"], check=True, timeout=30)
    return wav
