"""One JSON error shape for every 4xx/5xx: {"error": {"type", "message", "details"}}."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from curator.core.errors import Clash, CuratorError, Expired, Invalid, Missing

log = logging.getLogger("curator.api")

_TYPES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
    500: "internal", 503: "unavailable",
}


class APIError(Exception):
    """Raised by routes and services; rendered in the one error shape."""

    status_code = 400

    def __init__(self, message: str, details: Any = None, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        if status_code is not None:
            self.status_code = status_code


class NotFound(APIError):
    status_code = 404


class Unauthorized(APIError):
    status_code = 401


class Forbidden(APIError):
    status_code = 403


class Conflict(APIError):
    status_code = 409


class Gone(APIError):
    status_code = 410


class InvalidRequest(APIError):
    status_code = 422


class PayloadTooLarge(APIError):
    status_code = 413


class Unavailable(APIError):
    status_code = 503


def _json_safe(value: Any) -> Any:
    """Non-finite floats (from echoed input) as strings: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def error_body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"type": _TYPES.get(status, "error"), "message": message,
                      "details": _json_safe(jsonable_encoder(details))}}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append({"loc": [str(x) for x in err.get("loc", ())], "message": err.get("msg"),
                    "type": err.get("type")})
    return out


# The domain's refusals (curator/core/errors.py) by kind: the one place they meet HTTP.
DOMAIN_STATUS: dict[type[CuratorError], int] = {Invalid: 422, Missing: 404, Expired: 410,
                                                Clash: 409}


def domain_status(exc: CuratorError) -> int:
    for kind, status in DOMAIN_STATUS.items():
        if isinstance(exc, kind):
            return status
    return 400


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CuratorError)
    async def _domain_error(_: Request, exc: CuratorError) -> JSONResponse:
        status = domain_status(exc)
        return JSONResponse(error_body(status, exc.message, exc.details), status_code=status)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(error_body(exc.status_code, exc.message, exc.details),
                            status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, "request validation failed", _validation_details(exc)),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, "internal server error"), status_code=500)
