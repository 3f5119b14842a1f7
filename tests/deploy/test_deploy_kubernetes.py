"""Tier 1: the Kubernetes manifests (deploy/kubernetes), checked statically: every overlay
renders with `kubectl kustomize`, validates against the Kubernetes schemas offline
(kubernetes-validate) and passes checkov (its own venv, `make checkov`) with each skipped
rule explained; ports, probes, graces, env names and the security context agree with the
services' settings and the images."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import DEPLOY, MODEL_SERVICES, PREFIXES, ROOT, env_of, stages
from test_deploy_compose import check_settings

from services.runtime import metrics as runtime_metrics
from services.runtime.config import PORTS
from services.runtime.model_folder import MANIFEST_FILE

K8S = DEPLOY / "kubernetes"
OVERLAYS = ("gpu", "cpu", "autoscaling")
KUBERNETES_VERSION = "1.32"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
PRESTOP_S = 5


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl 1.27+ has Kustomize v5 built in)")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if "unknown command" in result.stderr or "components" in result.stderr:
        pytest.skip(f"this kubectl's Kustomize is too old: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return find(docs, "ConfigMap", "milo-config")["data"]


def test_every_overlay_renders_every_object(rendered: dict[str, list[dict[str, Any]]]):
    for name, docs in rendered.items():
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for service in MODEL_SERVICES:
            assert ("Deployment", service) in kinds, name
            assert ("Service", f"{service}-headless") in kinds, name
            assert ("PodDisruptionBudget", service) in kinds, name
        assert {
            ("Deployment", "gateway"),
            ("Service", "gateway"),
            ("ConfigMap", "milo-config"),
            ("PersistentVolumeClaim", "milo-models"),
            ("Job", "milo-models-fetch"),
        } <= kinds
        assert all(
            d["metadata"].get("namespace") == "milo" for d in docs if d["kind"] != "Namespace"
        ), f"{name}: everything in the milo namespace"


def schema_errors(doc: dict[str, Any]) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
    return None


def test_rendered_overlays_validate_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]],
):
    errors = [e for docs in rendered.values() for d in docs if (e := schema_errors(d))]
    assert not errors, "\n".join(errors)


def test_time_slicing_example_is_a_valid_object():
    (doc,) = yaml.safe_load_all((K8S / "overlays/gpu/nvidia-time-slicing.yaml").read_text())
    assert schema_errors(doc) is None
    sharing = yaml.safe_load(doc["data"]["any"])["sharing"]["timeSlicing"]["resources"]
    assert sharing == [{"name": "nvidia.com/gpu", "replicas": len(MODEL_SERVICES)}]


@pytest.mark.parametrize("name", MODEL_SERVICES)
def test_ports_and_probes_match_the_service_settings(
    name: str, rendered: dict[str, list[dict[str, Any]]]
):
    grpc_port, metrics_port = PORTS[name]
    docs = rendered["gpu"]
    deployment = find(docs, "Deployment", name)
    box = container(deployment)
    assert {p["name"]: p["containerPort"] for p in box["ports"]} == {
        "grpc": grpc_port,
        "metrics": metrics_port,
    }
    image_env = env_of(stages(DEPLOY / f"{name}.Dockerfile")[-1])
    assert int(image_env[f"{PREFIXES[name]}PORT"]) == grpc_port
    assert int(image_env[f"{PREFIXES[name]}METRICS_PORT"]) == metrics_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert box[probe]["grpc"] == {"port": grpc_port}, f"{probe}: grpc.health.v1 on grpc"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    service = find(docs, "Service", f"{name}-headless")
    assert service["spec"]["clusterIP"] == "None", "headless: DNS gives every pod"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": grpc_port,
        "metrics": metrics_port,
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The gateway reaches every replica through the headless Service, with round_robin.
    assert config(docs)[f"MILO_GATEWAY_{name.upper()}_ADDRESS"] == (
        f"dns:///{name}-headless:{grpc_port}"
    )


def test_gateway_is_a_normal_service_on_grpc_and_http(rendered: dict[str, list[dict[str, Any]]]):
    docs = rendered["gpu"]
    service = find(docs, "Service", "gateway")
    assert service["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in service["spec"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["grpc"] == PORTS["gateway"][0] and ports["http"] == 8080
    box = container(find(docs, "Deployment", "gateway"))
    assert box["readinessProbe"]["grpc"] == {"port": PORTS["gateway"][0]}
    image_env = env_of(stages(DEPLOY / "gateway.Dockerfile")[-1])
    assert int(image_env["MILO_GATEWAY_HTTP_PORT"]) == ports["http"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", [*MODEL_SERVICES, "gateway"])
def test_environment_names_real_settings_with_valid_values(
    name: str,
    overlay: str,
    rendered: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
):
    docs = rendered[overlay]
    env = dict(config(docs))
    for var in container(find(docs, "Deployment", name)).get("env", []):
        env[var["name"]] = var.get("value", "secret-value")
    check_settings(name, env, monkeypatch)


@pytest.mark.parametrize("name", [*MODEL_SERVICES, "gateway"])
def test_termination_grace_covers_prestop_and_the_drain(
    name: str, rendered: dict[str, list[dict[str, Any]]]
):
    docs = rendered["gpu"]
    pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    box = container(find(docs, "Deployment", name))
    assert box["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRESTOP_S)]
    grace = float(config(docs)[f"{PREFIXES[name]}SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] >= PRESTOP_S + grace + 5
    # A draining pod says NOT_SERVING: liveness must not kill it before the drain ends.
    live = box["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > grace


def image_user(dockerfile: Path) -> tuple[int, int]:
    runtime = stages(dockerfile)[-1]
    (user,) = runtime.all("USER")
    uid, gid = user.split(":")
    return int(uid), int(gid)


@pytest.mark.parametrize("name", [*MODEL_SERVICES, "gateway"])
def test_pods_run_as_the_images_non_root_user(name: str, rendered: dict[str, list[dict[str, Any]]]):
    pod = find(rendered["gpu"], "Deployment", name)["spec"]["template"]["spec"]
    uid, gid = image_user(DEPLOY / f"{name}.Dockerfile")
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    box = container(find(rendered["gpu"], "Deployment", name))["securityContext"]
    assert box == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", MODEL_SERVICES)
def test_models_volume_is_mounted_read_only_one_folder_per_service(
    name: str, rendered: dict[str, list[dict[str, Any]]]
):
    deployment = find(rendered["gpu"], "Deployment", name)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": "milo-models",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["models"] == {
        "name": "models",
        "mountPath": f"/models/{name}",
        "subPath": name,
        "readOnly": True,
    }
    assert config(rendered["gpu"])["MILO_MODELS_DIR"] == "/models"
    # The init container waits for this service's entry in the manifest, same image.
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == container(deployment)["image"]
    assert init["volumeMounts"] == [{"name": "models", "mountPath": "/models", "readOnly": True}]
    assert f'"{name}" in json.loads(manifest.read_text())' in init["command"][-1]
    assert MANIFEST_FILE == "manifest.json"


def test_models_job_runs_a_real_milo_command(rendered: dict[str, list[dict[str, Any]]]):
    import argparse

    from services.models.cli import add_commands

    job = find(rendered["gpu"], "Job", "milo-models-fetch")
    box = job["spec"]["template"]["spec"]["containers"][0]
    assert box["command"][0] == "milo"
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(box["command"][1:])
    assert (args.models_command, str(args.dir)) == ("fetch", "/models")
    mounts = {m["name"]: m for m in box["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and not mounts["models"].get("readOnly")


def test_gpu_overlay_gives_each_model_pod_one_gpu_and_cpu_overlay_none(
    rendered: dict[str, list[dict[str, Any]]],
):
    for name in MODEL_SERVICES:
        gpu = find(rendered["gpu"], "Deployment", name)
        assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container(gpu)["image"] == f"milo/{name}:cuda"
        spec = gpu["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        cpu = find(rendered["cpu"], "Deployment", name)
        assert "nvidia.com/gpu" not in container(cpu)["resources"].get("limits", {})
        assert container(cpu)["image"] == f"milo/{name}:cpu"
        assert "nodeSelector" not in cpu["spec"]["template"]["spec"]
    gateway = find(rendered["gpu"], "Deployment", "gateway")
    assert "nvidia.com/gpu" not in container(gateway)["resources"]["limits"]
    for key in ("MILO_STT_DEVICE", "MILO_TRANSLATE_DEVICE", "MILO_TTS_DEVICE"):
        assert config(rendered["gpu"])[key] == "cuda"
        assert config(rendered["cpu"])[key] == "cpu"


def test_autoscalers_read_metrics_the_services_export(rendered: dict[str, list[dict[str, Any]]]):
    docs = rendered["autoscaling"]
    values = yaml.safe_load(
        (K8S / "components/autoscaling/prometheus-adapter-values.yaml").read_text()
    )
    served = {}
    for rule in values["rules"]["custom"]:
        source = re.match(r"([a-z_]+)\{", rule["seriesQuery"]).group(1)  # type: ignore[union-attr]
        served[rule["name"]["as"]] = source
    exported = {
        m.describe()[0].name for m in (runtime_metrics.IN_FLIGHT, runtime_metrics.QUEUE_DEPTH)
    }
    assert set(served.values()) <= exported
    for name in MODEL_SERVICES:
        hpa = find(docs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
        assert metrics <= set(served), f"{name}: every metric is one the adapter serves"
        assert "replicas" not in find(docs, "Deployment", name)["spec"], "the HPA owns it"


CHECKOV_CONFIG = K8S / ".checkov.yaml"


def test_every_skipped_checkov_rule_is_explained():
    text = CHECKOV_CONFIG.read_text()
    skipped = yaml.safe_load(text)["skip-check"]
    assert skipped, "nothing skipped: drop the file"
    for rule in skipped:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"- {rule}"))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 20, f"{rule}: say why"


def test_checkov_passes_on_the_rendered_overlays(
    tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]
):
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed: `make checkov` (its own venv, .venv-checkov)")
    # One run (checkov takes ~10 s to start): autoscaling holds all of gpu, plus cpu.
    for overlay in ("autoscaling", "cpu"):
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered[overlay]))
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(CHECKOV_CONFIG), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
