"""The real client against the real app: sync via Starlette's TestClient, async via ASGI."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient

from curator.app import create_app
from curator_client import (
    AsyncClient,
    Client,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)

ADMIN = "test-admin-token"


def test_sync_client_trainer_loop(sqlite_settings):
    app = create_app(sqlite_settings)
    with TestClient(app, base_url="http://curator") as http, \
            Client("http://curator", token=ADMIN, http_client=http) as c:
        bank = c.create_bank("arith")
        added = c.add_problems(bank.bank_id, (
            {"external_id": f"q{i}", "prompt": f"{i} + {i}", "answer": str(2 * i),
             "metadata": {"difficulty": i % 3}} for i in range(120)), chunk_size=50)
        assert added.added == 120 and added.size == 120
        run = c.create_run(bank.bank_id, strategy="uniform", seed=3)
        steps = 0
        for batch in run.batches(batch_size=16, pool_size=32, steps=5):
            assert len(batch.problems) == 16
            batch.report([{"problem_id": p.problem_id,
                           "rewards": [float(int(p.answer) % 2), 1.0, 0.0]}
                          for p in batch.problems])
            steps += 1
        assert steps == 5
        info = run.info()
        assert info.step == 5 and info.tickets.reported == 5
        with pytest.raises(InvalidRequest):
            run.select(batch_size=500)
        with pytest.raises(NotFound):
            c.get_run(999)
        other = c.create_run(bank.bank_id)
        with pytest.raises(Forbidden):
            c.select(other.run_id, 4, token=run.token)

        # admin inspection and token management
        runs = {r["run_id"]: r for r in c.list_runs()}
        assert set(runs) == {run.run_id, other.run_id}
        assert runs[run.run_id]["step"] == 5
        dist = c.distribution(run.run_id, by="difficulty")
        assert dist["n_scored"] == 120 and dist["active"] is False
        masses = {g["value"]: g["mass"] for g in dist["mass_by"]["groups"]}
        assert sum(masses.values()) == pytest.approx(1.0)
        page = c.history(run.run_id, limit=3)
        assert [p["step"] for p in page["points"]] == [1, 2, 3]
        rest = c.history(run.run_id, after=page["next_after"])
        assert [p["step"] for p in rest["points"]] == [4, 5]
        new = c.rotate_run_token(run.run_id)
        assert new.token != run.token and new.info().step == 5
        with pytest.raises(Unauthorized):
            run.info()  # the old token stopped working
        assert c.revoke_run(other.run_id) == {"run_id": other.run_id, "revoked": True}
        assert c.get_run(other.run_id).revoked and not new.info().revoked
        ready = c.readyz()  # the in-process worker beats; nothing waits once applied
        assert ready.ok and ready.workers is not None and ready.workers["alive"] >= 1
        assert set(ready.workers) == {"alive", "last_beat_age_s", "lag_s", "waiting"}


@pytest.mark.anyio
async def test_async_client_roundtrip(sqlite_settings):
    app = create_app(sqlite_settings)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c")
        async with AsyncClient("http://c", token=ADMIN, http_client=http) as c:
            bank = await c.create_bank("a")
            await c.add_problems(bank.bank_id, [{"external_id": str(i), "prompt": f"p {i}"}
                                                for i in range(40)])
            run = await c.create_run(bank.bank_id)
            batch = await run.select(batch_size=8, pool_size=8)
            receipt = await batch.report([{"problem_id": p.problem_id, "utility": 0.5}
                                          for p in batch.problems])
            assert receipt.accepted == 8
        await http.aclose()
