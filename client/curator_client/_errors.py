"""Exceptions raised by curator_client.

Every exception the client raises on purpose derives from `CuratorError`::

    CuratorError
    ├── APIError(status_code, type, message, details)   the server answered with an error
    │   ├── BadRequest          400
    │   ├── Unauthorized        401
    │   ├── Forbidden           403
    │   ├── NotFound            404
    │   ├── Conflict            409
    │   ├── PayloadTooLarge     413
    │   ├── InvalidRequest      422
    │   └── ServerError         5xx
    └── TransportError                                    no usable answer (connect, timeout, ...)

`APIError` itself is raised for an error status without a dedicated class (e.g. 405, 429).
The class is picked from the HTTP status alone; `type` is the server's machine-readable
error type (`bad_request`, `unauthorized`, ..., `internal`, `unavailable`).
A `CuratorError` that is neither of the two subclasses means a 2xx answer the client
could not understand (not JSON, missing fields).
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIError",
    "BadRequest",
    "Conflict",
    "CuratorError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "error_from_response",
]

_MAX_MESSAGE_CHARS = 2000


class CuratorError(Exception):
    """Base class of every error raised by curator_client."""


class TransportError(CuratorError):
    """The request got no HTTP answer (connection refused, timeout, broken connection...).

    The underlying httpx exception is chained as `__cause__`.
    """


class APIError(CuratorError):
    """The server answered with an error status (or a non-2xx the client did not expect)."""

    def __init__(
        self,
        status_code: int,
        type: str,
        message: str,
        details: Any = None,
        *,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{status_code} {type}: {message}")
        self.status_code = status_code
        self.type = type
        self.message = message
        self.details = details
        self.response = response

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(status_code={self.status_code!r}, type={self.type!r}, "
            f"message={self.message!r}, details={self.details!r})"
        )


class BadRequest(APIError):
    """400: the request is malformed."""


class Unauthorized(APIError):
    """401: missing or unknown token."""


class Forbidden(APIError):
    """403: the token may not do this (e.g. a run token used on another run)."""


class NotFound(APIError):
    """404: no such bank, run or ticket."""


class Conflict(APIError):
    """409: clashes with the current state (e.g. different feedback for a reported ticket)."""


class PayloadTooLarge(APIError):
    """413: the body is too large (send fewer problems per request)."""


class InvalidRequest(APIError):
    """422: the body is well-formed JSON but does not validate."""


class ServerError(APIError):
    """5xx: the server (or a proxy in front of it) failed; `type` is internal / unavailable."""


_CLASS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}

_TYPE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    503: "unavailable",
}


def _default_type(status_code: int) -> str:
    if status_code in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status_code]
    return "internal" if status_code >= 500 else "http_error"


def _body_text(response: httpx.Response) -> str:
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "..."
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def error_from_response(response: httpx.Response) -> APIError:
    """Build (not raise) the `APIError` subclass matching an error response.

    The class comes from the status code. The server's body
    `{"error": {"type", "message", "details"}}` fills the fields; any other body (a proxy's
    HTML page, FastAPI's `{"detail": ...}`, nothing) still gives the status-mapped class, with
    the body text (or the reason phrase) as message.
    """
    status = response.status_code
    cls = _CLASS_BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    type_ = _default_type(status)
    message: str | None = None
    details: Any = None

    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        body = None

    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        if isinstance(error.get("type"), str) and error["type"]:
            type_ = error["type"]
        if error.get("message") is not None:
            message = str(error["message"])
        details = error.get("details")
    elif isinstance(body, dict) and "detail" in body:  # FastAPI's default error body
        detail = body["detail"]
        message = detail if isinstance(detail, str) else "request validation failed"
        details = None if isinstance(detail, str) else detail

    if message is None:
        message = _body_text(response)
    return cls(status, type_, message, details, response=response)
