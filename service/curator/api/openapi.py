"""The OpenAPI document, completed: a bearer security scheme (Swagger's Authorize button
takes either kind of token) and, per operation, the error responses it can give.

FastAPI declares the `Authorization` header as a plain parameter of every operation and
the routers' error responses as one list for all of them (410 on `GET /v1/banks`). The
document is post-processed once: the header parameter becomes the `bearer` scheme, and
each operation gets the errors that follow from what it takes (a token, path ids, query
parameters, a body) plus the ones its use case raises (`EXTRA`). The schemathesis suite
(tests/reliability/test_fuzz.py) checks every answer's status against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_TEXT = {
    400: "The body could not be read",
    401: "Missing, malformed or unknown token (the same whether the run exists or not)",
    403: "A valid token that is not allowed here (a run token on an admin endpoint, or "
         "another run's token)",
    404: "Unknown bank, run or ticket (to the admin token)",
    409: "Conflicts with what is kept",
    410: "The ticket is past CURATOR_TICKET_TTL_S",
    413: "Body over CURATOR_MAX_BODY_BYTES, or too many problems in one request",
    422: "Invalid request: the error's details name the field",
    500: "Internal error",
}

# What a use case raises beyond what its inputs imply (runs/, bank/, api/routes/).
EXTRA: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/banks"): {409},  # a bank of that name exists
    ("post", "/v1/runs"): {404},  # the bank, or init_from's run
    ("post", "/v1/runs/{run_id}/select"): {409},  # Idempotency-Key reused for another size
    ("post", "/v1/runs/{run_id}/feedback"): {409, 410},  # a different result; TTL
    ("post", "/v1/runs/{run_id}/metrics"): {409},  # another value for a kept number
    ("get", "/v1/compare"): {404},  # a run of the list
}


def _errors(method: str, path: str, op: dict[str, Any]) -> set[int]:
    params = op.get("parameters", [])
    codes = {500}
    if any(p["in"] == "header" and p["name"].lower() == "authorization" for p in params):
        codes |= {401, 403}
    if any(p["in"] == "path" for p in params):
        codes |= {404, 422}
    if any(p["in"] in ("query", "header") and p["name"].lower() != "authorization"
           for p in params):
        codes.add(422)
    if "requestBody" in op:
        codes |= {400, 413, 422}
    return codes | EXTRA.get((method, path), set())


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Security scheme and per-operation errors, in place; returns `schema`."""
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "The admin token (CURATOR_ADMIN_TOKEN, or data/admin_token in dev "
                       "mode) or a run's own token (returned once by POST /v1/runs)."}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            codes = _errors(method, path, op)
            params = op.get("parameters", [])
            if any(p["name"].lower() == "authorization" for p in params):
                op["parameters"] = [p for p in params if p["name"].lower() != "authorization"]
                if not op["parameters"]:
                    del op["parameters"]
                op["security"] = [{"bearer": []}]
            responses = op.setdefault("responses", {})
            for code in [c for c in responses if c.isdigit() and int(c) >= 400]:
                if int(code) not in codes and code != "503":
                    del responses[code]
            for code in sorted(codes):
                responses.setdefault(str(code), {
                    "description": ERROR_TEXT[code],
                    "content": {"application/json": {"schema": error_ref}}})
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                description=app.description, routes=app.routes, tags=app.openapi_tags))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
