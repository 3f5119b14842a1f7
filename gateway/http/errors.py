"""Errors as JSON with the right HTTP status.

Typed errors (services.runtime.errors, including a dependency's status code carried by
UpstreamError) map to a status through one table; no code reads an exception's text.
Native routes answer {"error": {"code", "message"}}; the OpenAI-compatible routes answer
OpenAI's shape {"error": {"message", "type", "param", "code"}} so its SDKs raise the
matching exception class. Anything unexpected is a 500 with a generic message (the
traceback goes to the log).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.runtime.errors import MiloError, UpstreamError

log = logging.getLogger(__name__)
C = grpc.StatusCode

STATUS = {
    C.INVALID_ARGUMENT: 400,
    C.OUT_OF_RANGE: 400,
    C.FAILED_PRECONDITION: 400,
    C.UNAUTHENTICATED: 401,
    C.PERMISSION_DENIED: 403,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.RESOURCE_EXHAUSTED: 429,
    C.CANCELLED: 503,
    C.UNIMPLEMENTED: 501,
    C.UNAVAILABLE: 503,
    C.DEADLINE_EXCEEDED: 504,
}
# A dependency that refuses the gateway's own key, or fails inside, is the gateway's
# problem to report, not the caller's: 502.
_UPSTREAM_STATUS = {
    C.UNAUTHENTICATED: 502,
    C.PERMISSION_DENIED: 502,
    C.INTERNAL: 502,
    C.UNKNOWN: 502,
    C.DATA_LOSS: 502,
}
_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_CODE_NAME = {
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
OPENAI_PREFIXES = ("/v1/audio/", "/v1/chat/completions", "/v1/models", "/v1/realtime")


class HttpError(Exception):
    """An error raised by the HTTP layer itself (413, 415, ...), with its status."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or _CODE_NAME.get(status, "ERROR")


def status_of(exc: MiloError) -> int:
    """The HTTP status for a typed error: by its gRPC code (`STATUS`), except that a
    dependency's UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL, UNKNOWN or DATA_LOSS is 502;
    500 for a code not in the table."""
    if isinstance(exc, UpstreamError) and exc.code in _UPSTREAM_STATUS:
        return _UPSTREAM_STATUS[exc.code]
    return STATUS.get(exc.code, 500)


def error_body(
    path: str, status: int, code: str, message: str, param: str | None = None
) -> dict[str, Any]:
    """The JSON error body for a route at `path`: OpenAI's shape {"error": {"message",
    "type", "param", "code"}} under OPENAI_PREFIXES, else {"error": {"code", "message"}}."""
    if path.startswith(OPENAI_PREFIXES):
        fallback = "server_error" if status >= 500 else "invalid_request_error"
        kind = _OPENAI_TYPE.get(status, fallback)
        return {"error": {"message": message, "type": kind, "param": param, "code": code.lower()}}
    return {"error": {"code": code, "message": message}}


def error_response(
    path: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    """`error_body` as a response with `status` and `headers`."""
    return JSONResponse(
        error_body(path, status, code, message, param), status_code=status, headers=headers
    )


# Reasons (MiloError.reason) that OpenAI's API names, and the parameter at fault.
_REASON_PARAM = {"context_length_exceeded": "messages"}


def milo_error_response(path: str, exc: MiloError) -> JSONResponse:
    """The response for a typed error: its status (`status_of`), Retry-After in whole
    seconds (at least 1) for RESOURCE_EXHAUSTED, WWW-Authenticate for 401; on the OpenAI
    routes a known reason (context_length_exceeded) is the code, with the parameter at fault."""
    status = status_of(exc)
    headers = None
    if exc.code == C.RESOURCE_EXHAUSTED:
        seconds = math.ceil((exc.retry_after_ms or 1000) / 1000)
        headers = {"Retry-After": str(max(1, seconds))}
    elif status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if exc.reason in _REASON_PARAM and path.startswith(OPENAI_PREFIXES):
        return error_response(
            path, status, exc.reason, exc.message, headers, param=_REASON_PARAM[exc.reason]
        )
    return error_response(path, status, exc.code.name, exc.message, headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":  # its loc is ("body", character offset)
            at = err.get("loc", ("body", "?"))[-1]
            detail = err.get("ctx", {}).get("error", "JSON decode error")
            parts.append(f"the body is not valid JSON: {detail} at character {at}")
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form")]
        where = ".".join(loc) or "body"
        param = param or where
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid", param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into JSON with the right status."""

    @app.exception_handler(MiloError)
    async def _milo(request: Request, exc: MiloError) -> JSONResponse:
        return milo_error_response(request.url.path, exc)

    @app.exception_handler(HttpError)
    async def _http(request: Request, exc: HttpError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        path = request.url.path
        # OpenAI answers a malformed body with 400, and its SDKs expect that.
        status = 400 if path.startswith(OPENAI_PREFIXES) else 422
        return error_response(path, status, "VALIDATION_ERROR", message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_NAME.get(exc.status_code, "ERROR")
        return error_response(
            request.url.path,
            exc.status_code,
            code,
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            request.url.path, 500, "INTERNAL", "internal error; see the gateway's log"
        )
