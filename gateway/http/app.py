"""The HTTP bridge's ASGI app: routes over GatewayCore, errors as JSON, the web page."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles

from gateway.config import GatewaySettings
from gateway.core import GatewayCore, version
from gateway.http import converse_ws, errors, native, openai_routes, operations
from gateway.http.auth import ApiKey
from gateway.http.deps import Bridge
from gateway.http.middleware import Admitted, BodyLimit, BodyTimeout, Metrics, RequireKey
from gateway.http.realtime import route as realtime_route
from gateway.http.status import StatusBoard
from gateway.http.voices import VoiceMap
from services.runtime.admission import Admission

WEB = Path(__file__).parent / "web"
_DESCRIPTION = """Milo's HTTP bridge: the same conversation code as the gRPC gateway.

Native routes under `/v1`, OpenAI-compatible routes (`/v1/audio/transcriptions`,
`/v1/audio/speech`, `/v1/chat/completions`, `/v1/models`), the OpenAI Realtime API at
`/v1/realtime` (WebSocket; `POST /v1/realtime/client_secrets` mints short-lived keys), a
WebSocket conversation at `/v1/converse`, and `/healthz`, `/readyz`, `/metrics`. When the
gateway has an API key, `/v1/*` needs `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
# Documentation only: RequireKey checks the key before the body is read.
_DOC_AUTH = [
    Depends(HTTPBearer(auto_error=False)),
    Depends(APIKeyHeader(name="X-API-Key", auto_error=False)),
]


def create_app(
    settings: GatewaySettings,
    core: GatewayCore,
    board: StatusBoard | None = None,
    admission: Admission | None = None,
) -> FastAPI:
    """The bridge's app. `admission`: the gateway's one pool, shared with its gRPC side
    (by default a pool of its own, sized by the same settings)."""
    app = FastAPI(
        title="Milo gateway",
        version=version(),
        description=_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    key = ApiKey(settings.api_key.get_secret_value() if settings.api_key else None)
    admission = admission or Admission(settings.max_concurrency, settings.max_queue)
    app.state.bridge = Bridge(
        settings,
        core,
        key,
        board or StatusBoard(settings, core.backends),
        admission,
        VoiceMap(core),
    )
    errors.install(app)
    for router in (native.router, openai_routes.router):
        app.include_router(router, dependencies=_DOC_AUTH)
    app.include_router(operations.router)
    app.include_router(converse_ws.router)
    app.include_router(realtime_route.router)
    _web(app)
    # Added innermost first: CORS (outermost) answers preflights before the key is asked.
    app.add_middleware(Admitted, admission=admission)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(BodyTimeout, timeout_s=settings.body_read_timeout_s)
    app.add_middleware(RequireKey, api_key=key)
    app.add_middleware(Metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After", "X-Sample-Rate"],
        )
    return app


def _web(app: FastAPI) -> None:
    """The page at / and its files under /static (plain files, no build step)."""
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})
