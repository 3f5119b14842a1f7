"""The client on its own: `milo-client` (gateway/milo_client) installs alone into a fresh
virtual environment and talks to the session's demo stack; the old import still works, with
a DeprecationWarning."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from stack import DemoStack

ROOT = Path(__file__).resolve().parents[2]

BOT = textwrap.dedent("""
    import asyncio, importlib.util, sys
    from milo.client import MiloClient
    from milo.gateway.v1 import gateway_pb2 as gw

    for name in ("services", "gateway", "jiwer"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed"

    async def main():
        async def inputs():
            yield "Hello"
        config = gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT)
        config.sampling.max_tokens = 16
        async with MiloClient(sys.argv[1]) as milo:
            kinds = [e.kind async for e in milo.converse(inputs(), config, timeout=120)]
        print(" ".join(kinds))

    asyncio.run(main())
""")


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        **kw,
    )  # type: ignore[call-overload]


def pins() -> list[str]:
    """The versions of grpcio and protobuf installed here, so pip takes them from its cache."""
    from importlib.metadata import version

    return [f"grpcio=={version('grpcio')}", f"protobuf=={version('protobuf')}"]


def test_the_client_installs_alone_and_talks_to_the_stack(tmp_path: Path, demo_stack: DemoStack):
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(ROOT / "gateway" / "milo_client"),
        ]
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("milo_client-*.whl")
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    python = str(venv / "bin" / "python")
    installed = run([python, "-m", "pip", "install", "-q", str(wheel), *pins()])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = run([python, "-m", "pip", "list", "--format=freeze"]).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in listed.splitlines()}
    assert {"milo-client", "grpcio", "protobuf"} <= names, listed
    assert names <= {
        "milo-client",
        "grpcio",
        "protobuf",
        "typing-extensions",
        "pip",
        "setuptools",
    }, listed  # grpcio's own dependency, and the venv's tools
    bot = run([python, "-c", BOT, demo_stack.gateway.address], cwd=tmp_path)
    assert bot.returncode == 0, bot.stdout + bot.stderr
    kinds = bot.stdout.split()
    assert kinds[-1] == "turn_ended" and "reply_sentence" in kinds, kinds


def test_the_old_import_still_works_with_a_deprecation_warning():
    sys.modules.pop("gateway.client", None)
    with pytest.warns(DeprecationWarning, match="milo.client"):
        old = importlib.import_module("gateway.client")
    from milo.client import MiloClient

    assert old.MiloClient is MiloClient
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("milo.client")  # the new import says nothing
