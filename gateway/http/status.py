"""The status board behind the web page's Status tab and GET /v1/status.

For each service: its health (the gateway's watch), model, and what its own /metrics says
(queue depth and active requests, request latency, GPU memory where the service exports
it); for the gateway: turn-stage latencies. "Recent" latency is the mean over the last
`window_s` seconds, from the difference between two scrapes of the latency histograms.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import REGISTRY, Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.backends import Backends
from gateway.config import GatewaySettings

log = logging.getLogger(__name__)
_QUEUE_GAUGES = ("milo_queue_depth", "milo_llm_queue_depth", "milo_stt_decode_queue")


@dataclass
class Sample:
    """One scrape: `at` is time.monotonic() (s); `sums` the latency histograms' (sum in s,
    count) by method or stage; `gauges` by metric name; `labels` the model id and device."""

    at: float
    sums: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (sum, count)
    gauges: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def read_families(families: Any, service: str | None, at: float) -> Sample:
    """Latency sums and counts by method (or stage), and the gauges the board shows."""
    sample = Sample(at)
    for family in families:
        for s in family.samples:
            if service is not None and s.labels.get("service", service) != service:
                continue
            _take(sample, family.name, s.name, s.labels, s.value)
    return sample


def _take(sample: Sample, family: str, name: str, labels: dict[str, str], value: float) -> None:
    if family in ("milo_request_duration_seconds", "milo_gateway_stage_seconds"):
        key = labels.get("method") or labels.get("stage") or "all"
        total, count = sample.sums.get(key, (0.0, 0.0))
        if name.endswith("_sum"):
            sample.sums[key] = (total + value, count)
        elif name.endswith("_count"):
            sample.sums[key] = (total, count + value)
    elif family in _QUEUE_GAUGES or family == "milo_admitted_active":
        sample.gauges[family] = sample.gauges.get(family, 0.0) + value
    elif family.startswith("milo_gpu_memory") or name == "process_resident_memory_bytes":
        sample.gauges[name] = value
    elif family == "milo_model_info" and value:
        sample.labels.update(model_id=labels.get("model_id", ""), device=labels.get("device", ""))


def recent_ms(now: Sample, then: Sample | None) -> dict[str, dict[str, float | None]]:
    """By method or stage: the mean latency in ms and the count since `then` (recent_*,
    None when nothing was recorded since) and since the process started."""
    out: dict[str, dict[str, float | None]] = {}
    for key, (total, count) in now.sums.items():
        if not count:
            continue
        past_total, past_count = then.sums.get(key, (0.0, 0.0)) if then else (0.0, 0.0)
        recent = count - past_count
        out[key] = {
            "recent_mean_ms": (total - past_total) / recent * 1000 if recent else None,
            "recent_count": recent,
            "mean_ms": total / count * 1000,
            "count": count,
        }
    return out


class StatusBoard:
    """Scrapes each service's /metrics (at `settings.metrics_address`) on demand and keeps
    recent scrapes, so latencies can be given over the last `window_s` seconds."""

    def __init__(
        self, settings: GatewaySettings, backends: Backends, window_s: float = 60.0
    ) -> None:
        self.backends, self.window_s = backends, window_s
        self.addresses = {name: settings.metrics_address(name) for name in backends.deps}
        self._history: dict[str, collections.deque[Sample]] = collections.defaultdict(
            lambda: collections.deque(maxlen=256)
        )

    async def snapshot(self) -> dict[str, Any]:
        """The board now: {"services": [...], "gateway": {...}}. A service whose /metrics
        cannot be read within 1.5 s has `metrics` None and a `metrics_error`; never raises
        for it."""
        async with httpx.AsyncClient(timeout=1.5) as client:
            services = await asyncio.gather(*(self._service(client, n) for n in self.addresses))
        gateway = read_families(REGISTRY.collect(), None, time.monotonic())
        return {"services": services, "gateway": self._summary("gateway", gateway)}

    async def _service(self, client: httpx.AsyncClient, name: str) -> dict[str, Any]:
        dep = self.backends.deps[name]
        out: dict[str, Any] = {
            "name": name,
            "address": dep.address,
            "status": dep.status,
            "model_id": dep.model_id,
            "metrics": None,
        }
        url = f"http://{self.addresses[name]}/metrics"
        try:
            reply = await client.get(url)
            reply.raise_for_status()
        except httpx.HTTPError as exc:
            out["metrics_error"] = f"{url}: {type(exc).__name__}"
            return out
        families: list[Metric] = list(text_string_to_metric_families(reply.text))
        out["metrics"] = self._summary(name, read_families(families, name, time.monotonic()))
        return out

    def _summary(self, key: str, sample: Sample) -> dict[str, Any]:
        history = self._history[key]
        while history and sample.at - history[0].at > self.window_s and len(history) > 1:
            history.popleft()
        then = history[0] if history else None
        history.append(sample)
        g = sample.gauges
        return {
            # A service's labelled gauges appear once first used: none yet means none queued.
            "queue_depth": g.get("milo_queue_depth", 0.0),
            "engine_queue": g.get("milo_llm_queue_depth", g.get("milo_stt_decode_queue")),
            "active": g.get("milo_admitted_active", 0.0),
            "latency": recent_ms(sample, then),
            "gpu_memory_bytes": {k: v for k, v in g.items() if k.startswith("milo_gpu_memory")}
            or None,
            "rss_bytes": g.get("process_resident_memory_bytes"),
            "device": sample.labels.get("device"),
            "window_s": round(sample.at - then.at, 1) if then else 0.0,
        }
