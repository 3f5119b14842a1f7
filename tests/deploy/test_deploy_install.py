"""Slow: each image's install step, run for real, CPU variant, then the service it installed.

No Docker engine here, so per component this does what the image build and start do:
copy the build context its Dockerfile COPYs (.dockerignore applied), make a fresh virtual
environment, run the very words of the build stage's `RUN ... deploy/install.sh EXTRA
DEVICE .` with DEVICE=cpu, then start the ENTRYPOINT with that environment's python, away
from the checkout (PYTHONSAFEPATH), on the demo models with the image's and the CPU compose
file's environment, wait for SERVING, and run the image's HEALTHCHECK command.

Installs resolve to the versions of the environment running the tests (a constraints file
from `pip freeze`, handed over as PIP_CONSTRAINT), from one wheelhouse: the module first
runs `pip wheel` once for every component's requirements and the build's (pyproject.toml),
then each install.sh runs with PIP_NO_INDEX and PIP_FIND_LINKS on it, so the five resolve
offline instead of each asking the indexes again: the subject is the install command and
the extra, not the registry. torch is taken as $MILO_DEPLOY_TORCH_SPEC (default
torch==2.13.0, the CPU wheel this machine has) from pip's own sources, since the PyTorch
index the images use is not reachable here. Each fresh environment is a copy of one made
by `python -m venv` (what the Dockerfiles run), which saves ensurepip's pip install per
component. All five take about 3-4 minutes on 2 cores with a warm pip cache (torch alone
is ~1 GB unpacked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_files import (
    COMPONENTS,
    DEPLOY,
    LISTEN_SETTINGS,
    MODEL_SERVICES,
    PREFIXES,
    ROOT,
    TEST_LISTEN_ENV,
    build_context,
    copy_sources,
    env_of,
    environment,
    install_command,
    interpolate_defaults,
    load_compose,
    merge,
    stages,
)
from procs import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
_WHEEL_URL = re.compile(r"^([A-Za-z0-9_.-]+) @ \S+/[^/]+?-([0-9][^-]*)-[^/]*\.whl")


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The versions installed here, as a pip constraints file (local wheels by version)."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = []
    for line in frozen.splitlines():
        match = _WHEEL_URL.match(line)
        if match:
            lines.append(f"{match.group(1)}=={match.group(2)}")
        elif "==" in line and " @ " not in line and not line.startswith("milo=="):
            lines.append(line)
    path = tmp_path_factory.mktemp("pip") / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def torch_spec() -> str:
    return os.environ.get("MILO_DEPLOY_TORCH_SPEC", "torch==2.13.0")


@pytest.fixture(scope="module")
def wheelhouse(constraints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of every requirement the five installs and their builds can ask for.

    One `pip wheel` (~380 MB, from pip's cache) of pyproject.toml's dependencies, every
    component's extra, the build system's requires and torch, at the constrained versions.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    requirements = [
        *project["project"]["dependencies"],
        *(req for name in COMPONENTS for req in extras[name]),
        *project["build-system"]["requires"],
        torch_spec(),
    ]
    path = tmp_path_factory.mktemp("wheelhouse")
    env = {**os.environ, "PIP_CONSTRAINT": str(constraints), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(path), *requirements],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def venv_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh `python -m venv`, copied (not reused) for each component."""
    venv = tmp_path_factory.mktemp("template") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv


def install(name: str, work: Path, constraints: Path, wheelhouse: Path, template: Path) -> Path:
    """The build stage of deploy/<name>.Dockerfile, DEVICE=cpu: the venv's python."""
    build = next(s for s in stages(DEPLOY / f"{name}.Dockerfile") if s.name == "build")
    context = work / "src"
    build_context(context, copy_sources(build))
    venv = work / "venv"
    shutil.copytree(template, venv, symlinks=True)  # what `python -m venv` makes, faster
    python = venv / "bin" / "python"
    args = [{"${DEVICE}": "cpu"}.get(word, word) for word in install_command(build)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "PYTHON": str(python),
        "PIP_CONSTRAINT": str(constraints),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "TORCH_SPEC": torch_spec(),
        "TORCH_INDEX_URL": "pypi",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_COMPILE": "0",
    }  # no .pyc for ~20k files: what gets installed is the same
    log = work / "install.log"
    with open(log, "wb") as out:
        result = subprocess.run(
            ["sh", "deploy/install.sh", *args],
            cwd=context,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert result.returncode == 0, f"install.sh {' '.join(args)} failed:\n{log.read_text()}"
    return python


def runtime_env(name: str, demo_models: Path) -> dict[str, str]:
    """The runtime image's ENV, then the CPU compose environment, on the demo models."""
    runtime = stages(DEPLOY / f"{name}.Dockerfile")[-1]
    skip = {"PATH", "VIRTUAL_ENV", *(PREFIXES[name] + s for s in LISTEN_SETTINGS)}
    env = {k: v for k, v in env_of(runtime).items() if k not in skip}
    compose = merge(
        load_compose(ROOT / "docker-compose.yml"), load_compose(ROOT / "docker-compose.cpu.yml")
    )
    env |= {k: interpolate_defaults(v) for k, v in environment(compose["services"][name]).items()}
    env |= {"MILO_MODELS_DIR": str(demo_models), "PYTHONSAFEPATH": "1", **TEST_LISTEN_ENV}
    for dep in MODEL_SERVICES:  # the gateway's dependencies: nothing listens there
        env[f"MILO_GATEWAY_{dep.upper()}_ADDRESS"] = "127.0.0.1:9"
    return env


def imported_from(python: Path, env: dict[str, str], cwd: Path) -> str:
    code = "import services.runtime.server as m; print(m.__file__)"
    return subprocess.run(
        [str(python), "-c", code],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def health_command(name: str) -> list[str]:
    (check,) = stages(DEPLOY / f"{name}.Dockerfile")[-1].all("HEALTHCHECK")
    return list(json.loads(check.partition(" CMD ")[2]))


@pytest.mark.parametrize("name", COMPONENTS)
def test_image_install_step_installs_and_the_service_becomes_serving(
    name: str,
    tmp_path: Path,
    constraints: Path,
    wheelhouse: Path,
    venv_template: Path,
    demo_models: Path,
):
    module = None
    try:
        python = install(name, tmp_path, constraints, wheelhouse, venv_template)
        env = runtime_env(name, demo_models)
        assert imported_from(python, env, tmp_path).startswith(str(tmp_path / "venv"))
        entrypoint = json.loads(stages(DEPLOY / f"{name}.Dockerfile")[-1].all("ENTRYPOINT")[0])
        assert entrypoint[:2] == ["python", "-m"]
        module = entrypoint[2]
        service = ServiceProcess(
            module, env, PREFIXES[name], python=str(python), startup_timeout=180
        )
        with service:
            path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
            check_env = {
                **os.environ,
                **env,
                "PATH": path,
                "MILO_HEALTHCHECK_ADDRESS": service.address,
            }
            check = subprocess.run(
                health_command(name),
                env=check_env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert check.returncode == 0, check.stdout + check.stderr
            assert check.stdout.strip().endswith("SERVING")
    finally:
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)  # ~0.2-1.2 GB each
        shutil.rmtree(tmp_path / "src", ignore_errors=True)
