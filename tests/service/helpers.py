"""Test helpers: an app with its lifespan running, and a client over ASGITransport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from curator.app import create_app
from curator.core.config import Settings

ADMIN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://curator") as client:
            yield client, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_bank(client: httpx.AsyncClient, n: int = 50, name: str = "b", *,
                    embedder: str = "hash", dim: int | None = None,
                    metadata=None) -> int:
    body = {"name": name, "embedder": embedder}
    if dim:
        body["dim"] = dim
    r = await client.post("/v1/banks", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    bank_id = r.json()["bank_id"]
    problems = [{"external_id": f"p{i}", "prompt": f"problem number {i}: {i} + {i % 7}",
                 "answer": str(i + i % 7),
                 "metadata": metadata(i) if metadata else {"group": i % 3}}
                for i in range(n)]
    r = await client.post(f"/v1/banks/{bank_id}/problems", json={"problems": problems},
                          headers=AUTH)
    assert r.status_code == 200, r.text
    return bank_id


async def make_run(client: httpx.AsyncClient, bank_id: int, strategy: str = "uniform",
                   params=None, seed: int = 7) -> tuple[int, str]:
    r = await client.post("/v1/runs", json={"bank_id": bank_id, "strategy": strategy,
                                            "params": params or {}, "seed": seed},
                          headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["run_id"], r.json()["token"]


async def wait_applied(client: httpx.AsyncClient, run_id: int, n: int,
                       timeout: float = 30.0, interval: float = 0.05) -> dict:
    """Poll the run until `n` tickets are applied; its info (AssertionError on timeout)."""
    for _ in range(int(timeout / interval)):
        info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
        if info["tickets"]["applied"] >= n:
            return info
        await asyncio.sleep(interval)
    raise AssertionError(f"{n} tickets not applied: {info}")


async def select_and_report(client: httpx.AsyncClient, run_id: int, token: str, *,
                            batch_size: int, pool_size: int,
                            result: Callable[[dict], dict]) -> dict:
    """One trainer step: select a batch, report `result(problem)` for each of its
    problems (asserting the 202); the select's answer."""
    body = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                              json={"batch_size": batch_size, "pool_size": pool_size})).json()
    r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
        "ticket_id": body["ticket_id"], "results": [result(p) for p in body["problems"]]})
    assert r.status_code == 202, r.text
    return body


def rollouts(rewards: list[float], rng, scale: float = 0.01) -> Callable[[dict], dict]:
    """A `result` for `select_and_report`: these rewards, random small log-ratios."""
    return lambda p: {"problem_id": p["problem_id"], "rewards": list(rewards),
                      "log_ratios": (rng.standard_normal(len(rewards)) * scale).tolist()}
