"""Authentication before the body: a pure ASGI middleware that refuses a write request
whose bearer cannot be allowed, before a byte of its body is read or parsed.

Bodies may be up to `max_body_bytes` (32 MiB): parsed JSON of that size takes the event
loop for a second or more, so a caller with no token must not get that far. What can be
decided without the database is decided here — no or malformed Authorization header; a
token that is neither an admin token nor shaped as a run token; a run token on an admin
endpoint — with the answer the route's own dependency would give (api/deps.py). A run
token is checked against its run's hash by that dependency, after this gate.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from curator.api.deps import is_admin, parse_bearer
from curator.api.errors import Unauthorized, error_body
from curator.runs import tokens

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# writes that accept a run's own token; every other /v1 write is admin-only
_RUN_WRITES = re.compile(r"^/v1/runs/[^/]+/(select|feedback|metrics)/?$")


class AuthGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in _WRITES
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        body = json.dumps(error_body(status, message)).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # the unread body is not drained
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _refusal(scope: Scope) -> tuple[int, str] | None:
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        try:
            token = parse_bearer(None if header is None else header.decode("latin-1"))
        except Unauthorized as exc:
            return 401, exc.message
        state = getattr(getattr(scope.get("app"), "state", None), "curator", None)
        if state is None:  # not started (no lifespan): let the route answer
            return None
        if is_admin(state, token):
            return None
        run_write = bool(_RUN_WRITES.match(scope["path"]))
        if tokens.token_run_id(token) is not None:
            return None if run_write else (403, "run tokens cannot use admin endpoints")
        return 401, "invalid token for this run" if run_write else "invalid admin token"
