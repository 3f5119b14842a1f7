"""HTTP bridge metrics (the gateway's registry, served at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "milo_gateway_http_requests",
    "HTTP requests answered, by route and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "milo_gateway_http_request_duration_seconds",
    "HTTP request wall time, to the last byte of a streamed reply",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
WEBSOCKETS = Gauge("milo_gateway_websockets_active", "Open /v1/converse WebSockets")
