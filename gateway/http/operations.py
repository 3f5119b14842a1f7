"""Operations: /healthz (the process is up), /readyz (every service SERVING), /metrics
(the gateway's Prometheus registry) and /v1/status (the web page's Status tab)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gateway.core import version
from gateway.http import schemas as s
from gateway.http.deps import bridge

router = APIRouter(tags=["operations"])
_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "some service is not SERVING; the body names them",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotReady"}}},
    }
}


@router.get("/healthz", response_model=s.Health, summary="The gateway process is up")
async def healthz() -> s.Health:
    """Always {"status": "ok"} while the process answers."""
    return s.Health(status="ok")


@router.get(
    "/readyz",
    response_model=s.Readiness,
    responses=_NOT_READY,
    summary="Ready when every service is SERVING, else 503 naming those that are not",
)
async def readyz(request: Request) -> Any:
    """Each service's health status; 503 with the names of those not SERVING."""
    statuses = bridge(request).core.backends.statuses()
    down = [name for name, status in statuses.items() if status != "SERVING"]
    if not down:
        return s.Readiness(ready=True, services=statuses)
    message = "not ready: " + ", ".join(f"{n} is {statuses[n]}" for n in down)
    body = s.NotReady(
        ready=False,
        services=statuses,
        not_ready=down,
        error=s.ErrorDetail(code="UNAVAILABLE", message=message),
    )
    return JSONResponse(body.model_dump(), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics of the gateway",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
    },
)
async def prometheus_metrics() -> Response:
    """The gateway's metrics in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _auth(request: Request) -> None:
    bridge(request).api_key.check(request)


@router.get(
    "/v1/status",
    dependencies=[Depends(_auth)],
    summary="Each service's health, model, recent latencies, queue depth, GPU memory",
)
async def status(request: Request) -> dict[str, Any]:
    """The gateway's version, whether an API key is required, the status board of each
    service and the number of open conversations. 401 without the key, when one is set."""
    b = bridge(request)
    board = await b.board.snapshot()
    return {"version": version(), "auth": b.api_key.enabled, **board, "sessions": _sessions()}


def _sessions() -> float:
    return REGISTRY.get_sample_value("milo_gateway_sessions_active") or 0.0
