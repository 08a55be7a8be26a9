"""Admin endpoints against real runs (real select/feedback rounds, real worker)."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import numpy as np
import pytest

from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio

DIM = 16
N_CLUSTER = 400


async def rounds(client: httpx.AsyncClient, run_id: int, token: str, n: int, utility,
                 *, batch: int = 32, pool: int = 128) -> list[list[int]]:
    """n select → feedback rounds, each waited until the worker applied it."""
    chosen_per_step = []
    for _ in range(n):
        r = await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                              json={"batch_size": batch, "pool_size": pool})
        assert r.status_code == 200, r.text
        ticket = r.json()
        chosen = [p["problem_id"] for p in ticket["problems"]]
        chosen_per_step.append(chosen)
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": ticket["ticket_id"],
            "results": [{"problem_id": p, "utility": utility(p)} for p in chosen]})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
            if info["tickets"]["applied"] == info["tickets"]["reported"]:
                break
            await asyncio.sleep(0.01)
        assert info["tickets"]["applied"] == info["tickets"]["reported"], "worker stalled"
    return chosen_per_step


def masses(body: dict) -> dict[str, float]:
    return {g["value"]: g["mass"] for g in body["mass_by"]["groups"]}


async def cluster_bank(client: httpx.AsyncClient) -> tuple[int, np.ndarray]:
    """Four clusters of equal size in embedding space, labelled by metadata `cluster`."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, DIM)) * 3
    labels = np.arange(N_CLUSTER) % 4
    vecs = centres[labels] + rng.standard_normal((N_CLUSTER, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    problems = [{"external_id": f"c{labels[i]}-{i}", "prompt": f"problem {i}",
                 "metadata": {"cluster": int(labels[i])},
                 "embedding": vecs[i].round(6).tolist()} for i in range(N_CLUSTER)]
    r = await client.post("/v1/banks", json={"name": "clusters", "embedder": "provided",
                                             "dim": DIM}, headers=AUTH)
    bank_id = r.json()["bank_id"]
    r = await client.post(f"/v1/banks/{bank_id}/problems", json={"problems": problems},
                          headers=AUTH)
    assert r.json()["added"] == N_CLUSTER
    return bank_id, labels


async def test_uniform_run_distribution_and_history(settings):
    def meta(i: int) -> dict:
        return {"group": i % 3, "tag": "even"} if i % 2 == 0 else {"group": i % 3}

    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=300, metadata=meta)
        run_id, token = await make_run(client, bank_id, "uniform")
        await rounds(client, run_id, token, 4, lambda p: 0.0, batch=16, pool=64)

        r = await client.get(f"/v1/runs/{run_id}/distribution?by=group", headers=AUTH)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["active"] is False and d["n_scored"] == 300 and d["sampled"] is False
        assert d["entropy"] == pytest.approx(math.log(300), abs=1e-9)
        assert d["entropy_ratio"] == pytest.approx(1.0, abs=1e-9)
        assert d["effective_support"] == pytest.approx(300, rel=1e-9)
        assert d["effective_share"] == pytest.approx(1.0, abs=1e-9)
        assert sum(masses(d).values()) == pytest.approx(1.0, abs=1e-9)
        for g in d["mass_by"]["groups"]:
            assert g["mass"] == pytest.approx(1 / 3, abs=1e-9) and g["count"] == 100
            assert g["uniform"] == pytest.approx(g["mass"], abs=1e-9)
        assert len(d["top"]) == 20 and d["top"][0]["rank"] == 1
        assert all(t["probability"] == pytest.approx(1 / 300) for t in d["top"])
        assert d["top"][0]["prompt"].startswith("problem number")
        assert set(d["fields"]) == {"group", "tag"}
        assert sum(d["histogram"]["counts"]) == 300
        assert sum(d["histogram"]["mass"]) == pytest.approx(1.0)
        assert d["queue"] == {**d["queue"], "issued": 4, "reported": 4, "applied": 4,
                              "pending": 0, "outstanding": 0}
        assert d["model_version"] == 4 and d["queue"]["lag_seconds"] == 0.0
        assert d["queue"]["last_applied_at"] is not None

        # missing values group under "(none)"; a sample is drawn with a fixed seed
        r = await client.get(f"/v1/runs/{run_id}/distribution?by=tag", headers=AUTH)
        assert masses(r.json()) == pytest.approx({"even": 0.5, "(none)": 0.5})
        first, again = [(await client.get(f"/v1/runs/{run_id}/distribution",
                                          params={"sample": 100, "by": "group"},
                                          headers=AUTH)).json() for _ in range(2)]
        assert first["n_scored"] == 100 and first["sampled"] is True
        assert first["entropy"] == pytest.approx(math.log(100), abs=1e-9)
        assert first["mass_by"] == again["mass_by"] and first["top"] == again["top"]
        assert sum(g["count"] for g in first["mass_by"]["groups"]) == 100

        r = await client.get(f"/v1/runs/{run_id}/history", headers=AUTH)
        h = r.json()
        assert h["total"] == 4 and h["next_after"] is None
        assert [p["step"] for p in h["points"]] == [1, 2, 3, 4]
        for p in h["points"]:
            assert p["curator_share"] == 0.0 and p["explore_share"] == 1.0
            assert p["pool_size"] == 64 and p["entropy_ratio"] == pytest.approx(1.0)
            assert p["n_items"] == 16 and p["selected_by"] is None
        page = (await client.get(f"/v1/runs/{run_id}/history?limit=3&by=group",
                                 headers=AUTH)).json()
        assert [p["step"] for p in page["points"]] == [1, 2, 3] and page["next_after"] == 3
        assert set(page["values"]) <= {"0", "1", "2"}
        for p in page["points"]:
            assert sum(p["selected_by"].values()) == pytest.approx(1.0)
        rest = (await client.get(f"/v1/runs/{run_id}/history?after=3&limit=3",
                                 headers=AUTH)).json()
        assert [p["step"] for p in rest["points"]] == [4] and rest["next_after"] is None

        runs = (await client.get("/v1/runs", headers=AUTH)).json()["runs"]
        assert [x["run_id"] for x in runs] == [run_id]
        assert runs[0]["status"] == "idle" and runs[0]["bank_size"] == 300
        assert runs[0]["last"]["step"] == 4 and runs[0]["queue"]["applied"] == 4


async def test_learning_run_moves_mass_to_the_rewarded_group(settings):
    async with running_app(settings) as (client, _):
        bank_id, labels = await cluster_bank(client)
        learn, learn_token = await make_run(client, bank_id, "actor_curator",
                                            {"dormant_steps": 2}, seed=11)
        flat, flat_token = await make_run(client, bank_id, "uniform", seed=3)

        def utility(p: int) -> float:  # cluster 0 always improves the policy
            return 2e-3 if labels[p] == 0 else 0.0

        await rounds(client, learn, learn_token, 1, utility)
        d = (await client.get(f"/v1/runs/{learn}/distribution?by=cluster", headers=AUTH)).json()
        assert d["active"] is False, "still in warm-up after one update: reported uniform"
        assert d["entropy"] == pytest.approx(math.log(N_CLUSTER), abs=1e-9)

        chosen = await rounds(client, learn, learn_token, 14, utility)
        await rounds(client, flat, flat_token, 3, utility)
        d = (await client.get(f"/v1/runs/{learn}/distribution?by=cluster&top=10",
                              headers=AUTH)).json()
        u = (await client.get(f"/v1/runs/{flat}/distribution?by=cluster", headers=AUTH)).json()
        assert d["active"] is True and d["model_version"] == 15
        mass = masses(d)
        assert sum(mass.values()) == pytest.approx(1.0, abs=1e-9)
        assert mass["0"] > 0.6, f"mass on the rewarded cluster {mass['0']:.2f} (uniform 0.25)"
        assert masses(u) == pytest.approx({"0": 0.25, "1": 0.25, "2": 0.25, "3": 0.25})
        assert u["entropy_ratio"] == pytest.approx(1.0) and d["entropy_ratio"] < 0.99
        assert d["effective_support"] < u["effective_support"]
        assert d["effective_support"] == pytest.approx(math.exp(d["entropy"]))
        assert sum(t["metadata"]["cluster"] == 0 for t in d["top"]) >= 8
        assert d["top"][0]["score"] == d["scores"]["max"]
        assert all(a["probability"] >= b["probability"] for a, b in zip(d["top"], d["top"][1:]))
        assert sum(d["histogram"]["mass"]) == pytest.approx(1.0)

        h = (await client.get(f"/v1/runs/{learn}/history?by=cluster", headers=AUTH)).json()
        assert h["total"] == 15 and len(h["points"]) == 15
        share0 = [p["selected_by"].get("0", 0.0) for p in h["points"]]
        truth = [np.mean([labels[p] == 0 for p in c]) for c in chosen]
        assert share0[1:] == pytest.approx(truth)  # the recorded share is the selected share
        assert np.mean(share0[-5:]) > np.mean(share0[:2]) + 0.3
        assert h["points"][0]["curator_share"] == 0.0 and h["points"][-1]["curator_share"] > 0
        assert all(p["loss"] is not None for p in h["points"])

        r = await client.get(f"/v1/compare?runs={flat},{learn}&by=cluster&top=10&points=5",
                             headers=AUTH)
        assert r.status_code == 200, r.text
        c = r.json()
        assert [x["run"]["run_id"] for x in c["runs"]] == [flat, learn]
        assert c["runs"][1]["distribution"]["mass_by"] == d["mass_by"]
        assert [p["step"] for p in c["runs"][1]["history"]["points"]] == list(range(11, 16))
        assert c["runs"][0]["run"]["strategy"] == "uniform"


async def test_arm_strategy_scores_with_its_categories(settings):
    """SEC reads a metadata field: its arms' mass is exp(Q/τ)-weighted, uniform within arms."""
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=60)  # metadata {"group": i % 3}
        run_id, token = await make_run(client, bank_id, "sec", {"field": "group"})
        for _ in range(3):  # group 0 has signal (mean |A| = 1), the others none
            ticket = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                        json={"batch_size": 30, "pool_size": 60})).json()
            results = [{"problem_id": p["problem_id"],
                        "rewards": [1, 0, 1, 0] if p["metadata"]["group"] == 0 else [1] * 4}
                       for p in ticket["problems"]]
            r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token),
                                  json={"ticket_id": ticket["ticket_id"], "results": results})
            assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()[
                "model_version"] < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        d = (await client.get(f"/v1/runs/{run_id}/distribution?by=group&top=60",
                              headers=AUTH)).json()
        mass = masses(d)
        assert d["active"] is True and sum(mass.values()) == pytest.approx(1.0)
        assert mass["0"] > 0.9 and mass["1"] == pytest.approx(mass["2"])
        per_problem = {t["metadata"]["group"]: t["probability"] for t in d["top"]}
        assert per_problem[0] == pytest.approx(mass["0"] / 20)  # uniform within the arm
        h = (await client.get(f"/v1/runs/{run_id}/history", headers=AUTH)).json()
        assert [p["mean_reward"] is not None for p in h["points"]] == [True] * 3


async def test_admin_auth_page_and_errors(sqlite_settings):
    async with running_app(sqlite_settings) as (client, _):
        bank_id = await make_bank(client, n=20)
        run_id, token = await make_run(client, bank_id)
        paths = ["/v1/runs", f"/v1/runs/{run_id}/distribution", f"/v1/runs/{run_id}/history",
                 f"/v1/compare?runs={run_id}"]
        for path in paths:
            r = await client.get(path)
            assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
            r = await client.get(path, headers=bearer(token))
            assert r.status_code == 403, path
            assert (await client.get(path, headers=AUTH)).status_code == 200, path
        r = await client.get("/v1/runs/999/distribution", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert (await client.get("/v1/compare?runs=1,x", headers=AUTH)).status_code == 422
        r = await client.get(f"/v1/compare?runs={run_id},999", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["details"] == {"run_ids": [999]}
        many = ",".join(str(i) for i in range(1, 10))
        assert (await client.get(f"/v1/compare?runs={many}", headers=AUTH)).status_code == 422
        r = await client.get(f"/v1/runs/{run_id}/distribution?sample=0", headers=AUTH)
        assert r.status_code == 422

        # a fresh run: status new, distribution uniform over the bank, empty history
        d = (await client.get(f"/v1/runs/{run_id}/distribution", headers=AUTH)).json()
        assert d["model_version"] == 0 and d["queue"]["issued"] == 0 and d["mass_by"] is None
        h = (await client.get(f"/v1/runs/{run_id}/history?by=group", headers=AUTH)).json()
        assert h == {**h, "points": [], "total": 0, "next_after": None, "values": []}
        assert (await client.get("/v1/runs", headers=AUTH)).json()["runs"][0]["status"] == "new"

        r = await client.post("/v1/banks", json={"name": "empty"}, headers=AUTH)
        empty_run, _ = await make_run(client, r.json()["bank_id"])
        d = (await client.get(f"/v1/runs/{empty_run}/distribution", headers=AUTH)).json()
        assert d["n_scored"] == 0 and d["entropy"] is None and d["top"] == []

        # the page shell needs no token; its assets are served from the package
        r = await client.get("/admin")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "admin.js" in r.text and "http" not in r.text.replace("http-equiv", "")
        r = await client.get("/admin/static/admin.js")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        assert (await client.get("/admin/static/admin.css")).status_code == 200
        r = await client.get("/admin/static/..%2Fviews.py")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        schema = (await client.get("/openapi.json")).json()
        assert "/v1/runs/{run_id}/distribution" in schema["paths"]
        assert "/admin" not in schema["paths"]


async def test_queue_lag_while_the_worker_is_behind(settings):
    settings = settings.model_copy(update={"embedded_worker": False})  # nothing gets applied
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=40)
        run_id, token = await make_run(client, bank_id)
        first = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                   json={"batch_size": 4})).json()
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": first["ticket_id"],
            "results": [{"problem_id": p["problem_id"], "utility": 0.1}
                        for p in first["problems"]]})
        assert r.status_code == 202
        await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                          json={"batch_size": 4})
        await asyncio.sleep(0.05)
        run = (await client.get("/v1/runs", headers=AUTH)).json()["runs"][0]
        assert run["status"] == "training" and run["last"] is None
        q = run["queue"]
        assert (q["issued"], q["reported"], q["applied"]) == (2, 1, 0)
        assert (q["pending"], q["outstanding"]) == (1, 1)
        assert 0.04 < q["lag_seconds"] < 60 and q["last_applied_at"] is None
        d = (await client.get(f"/v1/runs/{run_id}/distribution", headers=AUTH)).json()
        assert d["queue"]["pending"] == 1 and d["queue"]["lag_seconds"] >= q["lag_seconds"]


def _age_tickets(url: str, run_id: int, seconds: float) -> None:
    """Move the run's ticket timestamps `seconds` into the past (as if time passed)."""
    from datetime import timedelta

    from sqlalchemy import create_engine, select, update

    from curator.db.models import Ticket

    engine = create_engine(url)
    cols = (Ticket.created_at, Ticket.reported_at, Ticket.applied_at)
    with engine.begin() as c:
        for row in c.execute(select(Ticket.id, *cols).where(Ticket.run_id == run_id)).all():
            moved = {col.key: getattr(row, col.key) - timedelta(seconds=seconds)
                     for col in cols if getattr(row, col.key) is not None}
            c.execute(update(Ticket).where(Ticket.id == row.id).values(moved))
    engine.dispose()


async def test_run_status_reads_ticket_ages_and_a_problem_drills_down(settings):
    async with running_app(settings) as (client, _):
        bank = await make_bank(client, n=40)
        run_id, token = await make_run(client, bank, "actor_curator")
        await rounds(client, run_id, token, 2, lambda p: 0.01, batch=8, pool=16)
        status = lambda: client.get("/v1/runs", headers=AUTH)  # noqa: E731
        mine = lambda runs: next(r for r in runs if r["run_id"] == run_id)  # noqa: E731
        assert mine((await status()).json()["runs"])["status"] == "idle"
        # a prefetched batch the trainer never reports: waiting, then finished once quiet
        t = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                               json={"batch_size": 8, "pool_size": 16})).json()
        assert mine((await status()).json()["runs"])["status"] == "waiting"
        _age_tickets(settings.sqlalchemy_url, run_id, 600)
        assert mine((await status()).json()["runs"])["status"] == "finished"

        # the drill-down: the problem and each time this run selected it
        pid = t["problems"][0]["problem_id"]
        r = await client.get(f"/v1/runs/{run_id}/problems/{pid}", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["problem_id"] == pid and body["prompt"].startswith("problem number")
        assert body["visits"][0]["ticket_id"] == t["ticket_id"]  # newest first, unreported
        assert body["visits"][0]["utility"] is None
        steps = [v["step"] for v in body["visits"]]
        assert steps == sorted(steps, reverse=True)
        assert all(0 < v["propensity"] <= 1 for v in body["visits"])
        assert (await client.get(f"/v1/runs/{run_id}/problems/9999",
                                 headers=AUTH)).status_code == 404
        assert (await client.get(f"/v1/runs/{run_id}/problems/{pid}",
                                 headers=bearer(token))).status_code == 403
