"""The monitoring profile: Prometheus config (promtool), the provisioned Grafana dashboard,
and - tier 4 - the dashboard's metric names against a live /metrics scrape of every
service of the session's demo stack."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest
import yaml
from deploy_files import (
    COMPONENTS,
    DEPLOY,
    ROOT,
    dashboard_exprs,
    environment,
    load_compose,
    promql_metric_names,
    tool,
)
from prometheus_client.parser import text_string_to_metric_families
from stack import DemoStack

from services.runtime.config import PORTS

PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "milo.json"
# nvidia_gpu_exporter's names for the nvidia-smi fields the dashboard reads (its METRICS.md);
# no GPU here to scrape it, so they are pinned.
GPU_EXPORTER_METRICS = {
    "nvidia_smi_memory_used_bytes",
    "nvidia_smi_memory_total_bytes",
    "nvidia_smi_memory_free_bytes",
    "nvidia_smi_utilization_gpu_ratio",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    return {name for expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}


def test_promtool_accepts_the_prometheus_config():
    promtool = tool("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (Makefile system-packages)"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for group in jobs["milo"]["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{PORTS[name][1]}" for name in COMPONENTS}
    compose = load_compose(ROOT / "docker-compose.yml")["services"]
    for target in targets | {t for g in jobs["gpu"]["static_configs"] for t in g["targets"]}:
        host, port = target.split(":")
        assert port in compose[host]["expose"], f"{host} does not expose {port}"


def test_dashboard_is_provisioned_against_the_provisioned_datasource(dashboard: dict[str, Any]):
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (uid,) = [d["uid"] for d in datasources["datasources"]]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/milo.yml").read_text())
    grafana = load_compose(ROOT / "docker-compose.yml")["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"/etc/grafana/dashboards/{DASHBOARD.name}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]):
    names = dashboard_metrics(dashboard)
    for wanted in (
        "milo_gateway_stage_seconds_bucket",  # latency per stage
        "milo_gateway_first_audio_seconds_bucket",  # time to first audio
        "milo_stt_real_time_factor_bucket",
        "milo_tts_real_time_factor_bucket",
        "milo_llm_tokens_per_second_bucket",  # tokens per second
        "milo_queue_depth",  # queue depths
        "milo_requests_total",
        "milo_gateway_turn_errors_total",  # errors by code
        "nvidia_smi_memory_used_bytes",
    ):  # GPU memory
        assert wanted in names, wanted


def test_dashboard_names_only_milo_or_gpu_exporter_metrics(dashboard: dict[str, Any]):
    for name in dashboard_metrics(dashboard):
        assert name.startswith("milo_") or name in GPU_EXPORTER_METRICS, name


def test_promql_metric_name_extraction():
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(milo_x_bucket{code!="OK", '
        'a=~"b|c"}[$__rate_interval]))) / on (service) group_left max(milo_y) > bool 0'
    )
    assert promql_metric_names(expr) == {"milo_x_bucket", "milo_y"}


# --- tier 3: a live scrape of every service -----------------------------------------------


def sample_names(family_name: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "untyped": ("",),
        "unknown": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    }
    return {family_name + s for s in suffixes.get(kind, ("",))}


def scrape(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= sample_names(family.name, family.type)
        names |= {s.name for s in family.samples}
    return names


@pytest.fixture(scope="module")
def live_metrics(demo_stack: DemoStack) -> dict[str, set[str]]:
    """The metric names each running service of the session's demo stack exports."""
    demo_stack.start()
    return {name: scrape(proc.metrics_port) for name, proc in demo_stack.procs.items()}


def owner(metric: str) -> str | None:
    """The component whose own metric this is (None: the shared runtime's)."""
    return next((n for n in COMPONENTS if metric.startswith(f"milo_{n}_")), None)


def test_every_dashboard_metric_is_exported_by_a_running_service(
    dashboard: dict[str, Any], live_metrics: dict[str, set[str]]
):
    exported = set().union(*live_metrics.values())
    wanted = {m for m in dashboard_metrics(dashboard) if m.startswith("milo_")}
    not_running = sorted({o for m in wanted if (o := owner(m)) and o not in live_metrics})
    missing = sorted(
        m for m in wanted if owner(m) in live_metrics or owner(m) is None if m not in exported
    )
    assert not missing, f"the dashboard reads metrics no service exports: {missing}"
    for name, names in live_metrics.items():
        assert "milo_serving" in names and "milo_requests_total" in names, name
    assert not not_running, f"no live metrics from {not_running}"
