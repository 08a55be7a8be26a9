"""End-to-end API behaviour with the uniform strategy, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from curator.db.models import Feedback, Ticket
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio


async def _wait_applied(client, run_id, token, n, timeout=20.0):
    for _ in range(int(timeout / 0.05)):
        r = await client.get(f"/v1/runs/{run_id}", headers=bearer(token))
        if r.json()["tickets"]["applied"] >= n:
            return r.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"tickets not applied: {r.json()}")


async def test_select_feedback_roundtrip(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=40)
        run_id, token = await make_run(client, bank_id)
        r = await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 8,
                                                                  "pool_size": 16},
                              headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["step"] == 1 and body["model_version"] == 0
        assert len(body["problems"]) == 8
        assert len({p["problem_id"] for p in body["problems"]}) == 8
        for p in body["problems"]:
            assert p["source"] == "explore"
            assert p["propensity"] == pytest.approx(1 / 16)
            assert p["prompt"].startswith("problem number")
        results = [{"problem_id": p["problem_id"], "rewards": [1, 0, 1, 0]}
                   for p in body["problems"]]
        fb = {"ticket_id": body["ticket_id"], "results": results}
        r = await client.post(f"/v1/runs/{run_id}/feedback", json=fb, headers=bearer(token))
        assert r.status_code == 202, r.text
        assert r.json() == {"ticket_id": body["ticket_id"], "accepted": 8,
                            "state": "reported", "replayed": False, "reported": 8,
                            "expected": 8}
        info = await _wait_applied(client, run_id, token, 1)
        assert info["model_version"] == 1
        # the same feedback again: same answer, counted once
        r2 = await client.post(f"/v1/runs/{run_id}/feedback", json=fb, headers=bearer(token))
        assert r2.status_code == 202
        assert r2.headers["Curator-Replayed"] == "true"
        assert r2.json() == {"ticket_id": body["ticket_id"], "accepted": 0,
                             "state": "applied", "replayed": True, "reported": 8,
                             "expected": 8}
        await asyncio.sleep(0.2)
        info = await _wait_applied(client, run_id, token, 1)
        assert info["model_version"] == 1
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Feedback)) == 8
        assert conn.scalar(select(Ticket.state)) == "applied"
    engine.dispose()


async def test_readyz_unavailable_when_the_database_cannot_be_read(settings, tmp_path):
    """The database check is the worker-status read itself: when it fails the replica
    answers 503 in the one error shape, with no worker figures."""
    async with running_app(settings) as (client, app):
        state = app.state.curator
        good = state.session_factory
        gone = create_engine(f"sqlite:///{tmp_path}/no/such/dir/curator.db")
        state.session_factory = sessionmaker(gone)
        try:
            r = await client.get("/readyz")
        finally:
            state.session_factory = good
            gone.dispose()
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unavailable" and body["checks"]["db"] is False
        assert body["workers"] is None and body["error"]["type"] == "unavailable"
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["db"] is True


async def test_concurrent_selects_get_disjoint_pools(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=400)
        run_id, token = await make_run(client, bank_id)

        async def one():
            r = await client.post(f"/v1/runs/{run_id}/select",
                                  json={"batch_size": 20, "pool_size": 20},
                                  headers=bearer(token))
            assert r.status_code == 200, r.text
            return [p["problem_id"] for p in r.json()["problems"]]

        pools = await asyncio.gather(*(one() for _ in range(20)))
    seen = [pid for pool in pools for pid in pool]
    # 20 selects x 20 candidates = 400 = one epoch: every problem exactly once
    assert sorted(seen) == list(range(400))


async def test_health_and_auth(settings):
    async with running_app(settings) as (client, _):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["db"] is True
        r = await client.post("/v1/banks", json={"name": "x"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        r = await client.post("/v1/banks", json={"name": "x"}, headers=bearer("nope"))
        assert r.status_code == 401
        bank_id = await make_bank(client, n=10)
        run_a, tok_a = await make_run(client, bank_id)
        run_b, tok_b = await make_run(client, bank_id)
        r = await client.post(f"/v1/runs/{run_b}/select", json={"batch_size": 2},
                              headers=bearer(tok_a))
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
        r = await client.post("/v1/banks", json={"name": "y"}, headers=bearer(tok_a))
        assert r.status_code == 403
        r = await client.post(f"/v1/runs/{run_a}/select", json={"batch_size": 2},
                              headers=AUTH)
        assert r.status_code == 200


async def test_metrics_count_selects_feedback_and_backlog(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=30)
        run_id, token = await make_run(client, bank_id)
        for _ in range(2):
            t = (await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 4},
                                   headers=bearer(token))).json()
        fb = {"ticket_id": t["ticket_id"],
              "results": [{"problem_id": p["problem_id"], "rewards": [1, 0]}
                          for p in t["problems"]]}
        for _ in range(2):
            await client.post(f"/v1/runs/{run_id}/feedback", json=fb, headers=bearer(token))
        await _wait_applied(client, run_id, token, 1)
        r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in r.text.splitlines()
                                       if not line.startswith("#"))}
    assert lines["curator_select_seconds_count"] == 2
    assert lines['curator_select_seconds_bucket{le="+Inf"}'] == 2
    assert lines["curator_selected_problems_total"] == 8
    assert lines["curator_feedback_results_total"] == 4
    assert lines["curator_feedback_replays_total"] == 1
    assert lines['curator_tickets{state="issued"}'] == 1
    assert lines['curator_tickets{state="applied"}'] == 1
    assert lines["curator_runs"] == 1
