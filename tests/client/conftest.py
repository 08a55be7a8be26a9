"""Shared fixtures for the curator_client tests: an in-process fake of the HTTP API."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx
import pytest

BASE_URL = "http://curator.test"
ADMIN = "admin-token"

Responder = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """A MockTransport handler: queued answers per (method, path), every request recorded.

    An answer is an `httpx.Response`, an exception to raise (a transport failure), or a
    function of the request. The last queued answer of a route repeats.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._routes: dict[tuple[str, str], deque[Responder]] = {}

    def on(self, method: str, path: str, *answers: Responder) -> FakeServer:
        self._routes.setdefault((method, path), deque()).extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self._routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(
                404, json={"error": {"type": "not_found", "message": "no route", "details": None}}
            )
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    # -- inspection helpers ---------------------------------------------------------------

    def calls(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.url.path == path)
        ]

    def bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(r.content) for r in self.calls(method, path)]


def error(status: int, type_: str, message: str = "boom", details: Any = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": type_, "message": message, "details": details}}
    )


def bank_json(bank_id: int = 1, size: int = 0, **extra: Any) -> dict[str, Any]:
    base = {"bank_id": bank_id, "name": "arith", "embedder": "hash", "dim": 64, "size": size}
    return base | extra


def ticket_json(ticket_id: str = "t-1", step: int = 0, n: int = 2, run_id: int = 7) -> dict:
    return {
        "ticket_id": ticket_id,
        "run_id": run_id,
        "step": step,
        "model_version": step // 2,
        "problems": [
            {
                "problem_id": 10 * step + i,
                "external_id": f"p{10 * step + i}",
                "prompt": f"{i}+{i}",
                "answer": str(2 * i) if i else None,
                "metadata": {"topic": "add"},
                "propensity": 0.5,
                "source": "explore" if i else "curator",
            }
            for i in range(n)
        ],
    }


def created_run_json(run_id: int = 7, token: str = "run-token") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "token": token,
        "bank_id": 1,
        "strategy": "actor_curator",
        "params": {"lr": 0.1},
        "seed": 0,
        "name": None,
    }


def receipt_json(ticket_id: str = "t-1", accepted: int = 2, state: str = "reported") -> dict:
    return {"ticket_id": ticket_id, "accepted": accepted, "state": state}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def api() -> Any:
    """The JSON builders above, for tests to use without importing conftest."""

    class Api:
        BASE_URL = BASE_URL
        ADMIN = ADMIN
        error = staticmethod(error)
        bank = staticmethod(bank_json)
        ticket = staticmethod(ticket_json)
        created_run = staticmethod(created_run_json)
        receipt = staticmethod(receipt_json)

    return Api
