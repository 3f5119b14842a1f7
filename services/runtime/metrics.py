"""Prometheus metrics shared by every service, served over HTTP on a separate port.

Every metric carries a `service` label, so one Prometheus job can scrape all services and
one process may host several services in tests. Services add their own metrics (batch
sizes, tokens per second, real-time factor) in their own folder, prefixed `milo_<service>_`.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# Latency buckets from 5 ms to 2 min: covers a Describe call and a long LLM stream alike.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "milo_requests", "RPCs finished, by method and status code", ["service", "method", "code"]
)
LATENCY = Histogram(
    "milo_request_duration_seconds",
    "RPC wall time from receipt to status, by method and status code",
    ["service", "method", "code"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("milo_requests_in_flight", "RPCs being handled now", ["service", "method"])
QUEUE_DEPTH = Gauge("milo_queue_depth", "Requests waiting for admission", ["service"])
ACTIVE = Gauge("milo_admitted_active", "Requests holding an admission slot", ["service"])
QUEUE_WAIT = Histogram(
    "milo_queue_wait_seconds", "Time waiting for admission", ["service"], buckets=LATENCY_BUCKETS
)
MODEL_LOAD = Gauge("milo_model_load_seconds", "Time to load and warm up the model", ["service"])
MODEL_INFO = Gauge(
    "milo_model_info",
    "The model this service runs (value is always 1)",
    ["service", "model_id", "device"],
)
SERVING = Gauge("milo_serving", "1 while health says SERVING, else 0", ["service"])


_GPU_WATCHED: set[str] = set()


def watch_gpu(service: str) -> None:
    """Export GPU memory for this service (once per process and service; silent on CPU)."""
    if service in _GPU_WATCHED:
        return
    from services.runtime.gpu import GpuMemoryCollector

    _GPU_WATCHED.add(service)
    prometheus_client.REGISTRY.register(GpuMemoryCollector(service))


class MetricsServer:
    """The /metrics HTTP endpoint on its own port (0 picks a free port)."""

    def __init__(self, host: str, port: int) -> None:
        server, thread = prometheus_client.start_http_server(port, addr=host)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port: int = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        """Stop serving /metrics and free its port."""
        self._server.shutdown()
        self._server.server_close()
