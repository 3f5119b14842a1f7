"""Tier 1: docker-compose.yml and the CPU override, checked statically: the Compose
Specification schema, GPU sharing, health-gated start-up, published ports, read-only model
mounts, and every MILO_* variable being a real setting of its service."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    COMPONENTS,
    MODEL_SERVICES,
    PREFIXES,
    ROOT,
    environment,
    interpolate_defaults,
    load_compose,
    merge,
    tool,
    untagged,
)
from pydantic_settings import BaseSettings

from services.runtime.config import PORTS

BASE = ROOT / "docker-compose.yml"
CPU = ROOT / "docker-compose.cpu.yml"
MONITORING = ("prometheus", "grafana", "gpu-exporter")


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load_compose(BASE)


@pytest.fixture(scope="module")
def cpu(base: dict[str, Any]) -> dict[str, Any]:
    return merge(base, load_compose(CPU))


def validate(path: Path) -> None:
    checker = tool("check-jsonschema")
    assert checker, "check-jsonschema not found: pip install check-jsonschema (dev extra)"
    cmd = [checker, "--builtin-schema", "vendor.compose-spec", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_validates_against_the_compose_spec():
    validate(BASE)


def test_cpu_override_and_the_merged_model_validate(tmp_path: Path, cpu: dict[str, Any]):
    # The schema cannot read Compose's merge tags (!reset, !override): it checks the values.
    override = tmp_path / "docker-compose.cpu.json"
    override.write_text(json.dumps(untagged(load_compose(CPU))))
    validate(override)
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(cpu))
    validate(merged)


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return list(reservations.get("devices", []))


def test_every_model_service_reserves_the_one_nvidia_gpu(base: dict[str, Any]):
    for name, service in base["services"].items():
        devices = gpu_devices(service)
        if name in (*MODEL_SERVICES, "gpu-exporter"):
            assert len(devices) == 1, name
            assert devices[0]["driver"] == "nvidia"
            assert "gpu" in devices[0]["capabilities"]
            assert devices[0]["device_ids"] == ["${MILO_GPU:-0}"], "all share the same card"
        else:
            assert not devices, f"{name} needs no GPU"


def test_only_the_gateway_publishes_ports_by_default(base: dict[str, Any]):
    default = {n: s for n, s in base["services"].items() if not s.get("profiles")}
    assert set(default) == set(COMPONENTS)
    published = {n: s["ports"] for n, s in default.items() if s.get("ports")}
    assert list(published) == ["gateway"]
    container_ports = sorted(int(p.rsplit(":", 1)[1]) for p in published["gateway"])
    assert container_ports == [8080, PORTS["gateway"][0]]
    assert all(p.startswith("${MILO_PUBLISH_ADDRESS:-127.0.0.1}:") for p in published["gateway"])


def test_gateway_starts_after_the_model_services_are_healthy(base: dict[str, Any]):
    gateway = base["services"]["gateway"]
    assert gateway["depends_on"] == {
        name: {"condition": "service_healthy"} for name in MODEL_SERVICES
    }
    env = environment(gateway)
    for name in MODEL_SERVICES:
        assert env[f"MILO_GATEWAY_{name.upper()}_ADDRESS"] == f"{name}:{PORTS[name][0]}"


def test_every_service_restarts_and_model_services_build_their_own_image(base: dict[str, Any]):
    for name, service in base["services"].items():
        assert service["restart"] == "unless-stopped", name
    for name in COMPONENTS:
        build = base["services"][name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == f"deploy/{name}.Dockerfile"
    for name in MODEL_SERVICES:
        assert base["services"][name]["build"]["args"]["DEVICE"] == "cuda"


def test_models_are_mounted_read_only_one_folder_per_service(base: dict[str, Any]):
    for name in MODEL_SERVICES:
        (volume,) = base["services"][name]["volumes"]
        assert volume == {
            "type": "bind",
            "source": f"${{MILO_MODELS_DIR:-./models}}/{name}",
            "target": f"/models/{name}",
            "read_only": True,
        }
    assert "volumes" not in base["services"]["gateway"]


def settings_class(name: str) -> type[BaseSettings]:
    module_name = "gateway.config" if name == "gateway" else f"services.{name}.config"
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, BaseSettings)
            and value.model_config.get("env_prefix") == PREFIXES[name]
        ):
            return value
    raise AssertionError(f"no settings class with prefix {PREFIXES[name]} in {module_name}")


def check_settings(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each MILO_<NAME>_* variable is a field (pydantic ignores unknown ones silently), and
    the values, ${VAR:-default} taken at their defaults, pass the service's validation."""
    cls, prefix = settings_class(name), PREFIXES[name]
    ours = {k: interpolate_defaults(v) for k, v in env.items() if k.startswith(prefix)}
    fields = {k: k.removeprefix(prefix).lower() for k in ours}
    unknown = sorted(k for k, f in fields.items() if f not in cls.model_fields)
    assert not unknown, f"{name}: not settings of {cls.__name__}: {unknown}"
    for key in [k for k in os.environ if k.startswith(prefix)]:
        monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MILO_MODELS_DIR", "/models")
    settings = cls()  # raises ValidationError on a bad value
    assert set(fields.values()) <= settings.model_fields_set


@pytest.mark.parametrize("name", COMPONENTS)
def test_environment_names_real_settings_with_valid_values(
    name: str, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    check_settings(name, environment(base["services"][name]), monkeypatch)


@pytest.mark.parametrize("name", MODEL_SERVICES)
def test_cpu_override_builds_cpu_images_without_gpu_reservations(
    name: str, cpu: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    service = cpu["services"][name]
    assert not gpu_devices(service)
    assert service["build"]["args"]["DEVICE"] == "cpu"
    assert service["image"] == f"milo/{name}:cpu"
    env = environment(service)
    assert env.get(f"{PREFIXES[name]}DEVICE", "cpu") == "cpu"
    assert service["volumes"][0]["read_only"] is True, "the override keeps the mounts"
    check_settings(name, env, monkeypatch)


def test_cpu_override_keeps_the_gpu_exporter_out_of_the_monitoring_profile(cpu: dict[str, Any]):
    assert "monitoring" not in cpu["services"]["gpu-exporter"]["profiles"]
    assert cpu["services"]["prometheus"]["profiles"] == ["monitoring"]


def test_monitoring_profile_mounts_files_that_exist(base: dict[str, Any]):
    for name in MONITORING:
        assert base["services"][name]["profiles"] == ["monitoring"], name
    for name in ("prometheus", "grafana"):
        for volume in base["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_vram_budget_in_the_comments_adds_up_and_fits_16_gb():
    text = BASE.read_text()
    rows = dict(re.findall(r"^#   (stt|translate|llm|tts)\s+(\d+\.\d) GiB", text, re.M))
    assert set(rows) == set(MODEL_SERVICES)
    total = float(re.search(r"^#   total\s+(\d+\.\d) GiB", text, re.M).group(1))  # type: ignore[union-attr]
    reserve = float(re.search(r"\+ WSL2.*?~(\d+\.\d) GiB", text).group(1))  # type: ignore[union-attr]
    assert sum(map(float, rows.values())) == pytest.approx(total)
    assert total + reserve <= 16_303 / 1024, "the budget must fit the card"
