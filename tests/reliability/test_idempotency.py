"""Idempotency and ordering of feedback, on real SQLite and PostgreSQL.

The defined answers (see runs/feedback.py; the ticket's issued→reported transition is
the guard, first write wins):

* the first feedback for a ticket: 202 {ticket_id, accepted, state: "reported"};
* any later feedback for a ticket already reported (a retry, a concurrent duplicate, or
  a different body): 202 with the first receipt (same ticket_id and accepted; state is
  "reported" or "applied") and the header `Curator-Replayed: true`; nothing is stored;
* feedback for a ticket still `issued` after `ticket_ttl_s`: 410 {"error": {"type":
  "gone"}}; nothing is stored. A replay of a ticket reported in time keeps getting its
  receipt after the TTL (the receipt is the record, not a new acceptance);
* feedback for a ticket selected under an older model version is applied later, in report
  order, with the logits and propensities stored at selection time (the OSMD ratio's
  denominator is the policy that actually sampled the batch).
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from curator.curation.types import Pool
from curator.db.models import Bank, Feedback, HistoryPoint, Run, Ticket, TicketItem
from curator.runs import apply
from curator.runs.strategy_store import checkpoint_state, load_strategy
from tests.reliability.support import assert_applied_exactly_once
from tests.service.helpers import (
    AUTH,
    bearer,
    make_bank,
    make_run,
    running_app,
    wait_applied,
)

pytestmark = pytest.mark.anyio


def count(url: str, model, *where) -> int:
    engine = create_engine(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(model).where(*where))
    engine.dispose()
    return n


async def test_concurrent_identical_feedback_is_counted_once(settings):
    settings.embedded_worker = False  # hold the ticket at `reported` while the race runs
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40))
        ticket = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                    json={"batch_size": 8, "pool_size": 16})).json()
        body = {"ticket_id": ticket["ticket_id"], "results": [
            {"problem_id": p["problem_id"], "rewards": [1, 0, 1, 1]}
            for p in ticket["problems"]]}
        answers = await asyncio.gather(*(
            client.post(f"/v1/runs/{run_id}/feedback", json=body, headers=bearer(token))
            for _ in range(10)))
        assert [r.status_code for r in answers] == [202] * 10, [r.text for r in answers]
        receipt = {"ticket_id": ticket["ticket_id"], "accepted": 0, "state": "reported",
                   "replayed": True, "reported": 8, "expected": 8}
        fresh = [r for r in answers if "Curator-Replayed" not in r.headers]
        assert len(fresh) == 1
        assert fresh[0].json() == receipt | {"accepted": 8, "replayed": False}
        assert all(r.json() == receipt for r in answers if r not in fresh)
        assert all(r.headers["Curator-Replayed"] == "true" for r in answers if r not in fresh)
    url = settings.sqlalchemy_url
    assert count(url, Feedback, Feedback.ticket_id == ticket["ticket_id"]) == 8

    settings.embedded_worker = True  # a worker starts, re-queues the ticket, applies it once
    async with running_app(settings) as (client, _):
        info = await wait_applied(client, run_id, 1)
        r = await client.post(f"/v1/runs/{run_id}/feedback", json=body, headers=bearer(token))
        assert r.status_code == 202 and r.headers["Curator-Replayed"] == "true"
        assert r.json() == {"ticket_id": ticket["ticket_id"], "accepted": 0, "state": "applied",
                            "replayed": True, "reported": 8, "expected": 8}
        await asyncio.sleep(0.3)
        assert (await wait_applied(client, run_id, 1))["model_version"] == 1
    assert info["tickets"] == {"issued": 1, "reported": 1, "applied": 1, "failed": 0,
                               "partial": 0}
    engine = create_engine(url)
    assert_applied_exactly_once(engine, run_id, 1)
    engine.dispose()


async def test_different_second_feedback_is_a_conflict_and_changes_nothing(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40))
        ticket = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                    json={"batch_size": 6, "pool_size": 12})).json()
        ids = [p["problem_id"] for p in ticket["problems"]]
        first = {"ticket_id": ticket["ticket_id"],
                 "results": [{"problem_id": i, "utility": 0.5} for i in ids]}
        second = {"ticket_id": ticket["ticket_id"],
                  "results": [{"problem_id": i, "utility": -9.0} for i in ids[:2]]}
        r1 = await client.post(f"/v1/runs/{run_id}/feedback", json=first, headers=bearer(token))
        r2 = await client.post(f"/v1/runs/{run_id}/feedback", json=second,
                               headers=bearer(token))
        assert r1.status_code == 202 and r1.json()["state"] == "reported"
        assert r2.status_code == 409, r2.text
        err = r2.json()["error"]
        assert err["type"] == "conflict" and err["details"]["problem_ids"] == sorted(ids[:2])
        await wait_applied(client, run_id, 1)
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as c:
        utilities = c.scalars(select(Feedback.utility)
                              .where(Feedback.ticket_id == ticket["ticket_id"])).all()
    assert sorted(utilities) == [0.5] * 6  # the second body changed nothing
    assert_applied_exactly_once(engine, run_id, 1)
    engine.dispose()


async def test_expired_ticket_is_gone_but_a_reported_one_keeps_its_receipt(settings):
    settings.ticket_ttl_s = 1.0
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40))
        sel = f"/v1/runs/{run_id}/select"
        t1 = (await client.post(sel, json={"batch_size": 4}, headers=bearer(token))).json()
        t2 = (await client.post(sel, json={"batch_size": 4}, headers=bearer(token))).json()

        def body(t):
            return {"ticket_id": t["ticket_id"],
                    "results": [{"problem_id": p["problem_id"], "utility": 1.0}
                                for p in t["problems"]]}

        r1 = await client.post(f"/v1/runs/{run_id}/feedback", json=body(t1),
                               headers=bearer(token))
        assert r1.status_code == 202
        await asyncio.sleep(1.3)
        late = await client.post(f"/v1/runs/{run_id}/feedback", json=body(t2),
                                 headers=bearer(token))
        assert late.status_code == 410, late.text
        err = late.json()["error"]
        assert err["type"] == "gone" and "expired" in err["message"]
        assert err["details"]["ticket_id"] == t2["ticket_id"]
        again = await client.post(f"/v1/runs/{run_id}/feedback", json=body(t1),
                                  headers=bearer(token))
        assert again.status_code == 202 and again.headers["Curator-Replayed"] == "true"
        assert r1.json()["accepted"] == again.json()["reported"] == 4
        assert again.json()["accepted"] == 0 and again.json()["replayed"] is True
        info = await wait_applied(client, run_id, 1)
        assert info["tickets"] == {"issued": 2, "reported": 1, "applied": 1, "failed": 0,
                                   "partial": 0}
    url = settings.sqlalchemy_url
    assert count(url, Feedback, Feedback.ticket_id == t2["ticket_id"]) == 0
    assert count(url, Ticket, Ticket.id == t2["ticket_id"], Ticket.state == "issued") == 1


async def test_feedback_for_an_old_model_version_uses_stored_logits(settings):
    dim = 8
    async with running_app(settings) as (client, app):
        r = await client.post("/v1/banks", json={"name": "old", "embedder": "provided",
                                                 "dim": dim}, headers=AUTH)
        bank_id = r.json()["bank_id"]
        vecs = np.random.default_rng(1).standard_normal((60, dim)).astype(np.float32)
        r = await client.post(f"/v1/banks/{bank_id}/problems", headers=AUTH, json={
            "problems": [{"external_id": f"e{i}", "prompt": f"p{i}",
                          "embedding": vecs[i].tolist()} for i in range(60)]})
        assert r.status_code == 200, r.text
        run_id, token = await make_run(client, bank_id, "actor_curator",
                                       {"dormant_steps": 0, "hidden": 32, "lr": 0.2,
                                        "max_kl": 0}, seed=5)
        sel = f"/v1/runs/{run_id}/select"

        async def choose():
            r = await client.post(sel, json={"batch_size": 8, "pool_size": 16},
                                  headers=bearer(token))
            return r.json()

        async def report(t, sign=1.0):
            r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
                "ticket_id": t["ticket_id"],
                "results": [{"problem_id": p["problem_id"],
                             "utility": sign * (0.01 if p["problem_id"] % 2 else -0.01)}
                            for p in t["problems"]]})
            assert r.status_code == 202, r.text

        t1, t2 = await choose(), await choose()
        assert t1["model_version"] == t2["model_version"] == 0
        await report(t1)
        await wait_applied(client, run_id, 1)
        t3 = await choose()
        assert t3["model_version"] == 1
        await report(t2, sign=-1.0)  # selected under v0, applied on top of v1
        await wait_applied(client, run_id, 2)
        await report(t3)
        await wait_applied(client, run_id, 3)
        state = app.state.curator

    engine = create_engine(settings.sqlalchemy_url)
    assert_applied_exactly_once(engine, run_id, 3)
    sf, files = state.session_factory, state.files
    with sf() as s:
        run = s.get(Run, run_id)
        items = s.execute(select(TicketItem.problem_id, TicketItem.logit, TicketItem.propensity)
                          .where(TicketItem.ticket_id == t2["ticket_id"])
                          .order_by(TicketItem.rank)).all()
        hist = {h.ticket_id: h for h in s.scalars(select(HistoryPoint)
                                                   .where(HistoryPoint.run_id == run_id))}
        v0, v1 = (load_strategy(s, run, v, dim, "cpu") for v in (0, 1))
        ids = np.array([i.problem_id for i in items])
        pool = Pool(problem_ids=ids, embeddings=vecs[ids])
        stored = np.array([i.logit for i in items])
        # the logits stored with t2 are v0's (selection time), not v1's
        np.testing.assert_allclose(stored, v0.logits(pool), rtol=1e-5, atol=1e-6)
        assert np.abs(stored - v1.logits(pool)).max() > 1e-4
        assert [p["propensity"] for p in t2["problems"]] == pytest.approx(
            [i.propensity for i in items])
        # applied second (report order), as version 2, with its own step
        assert (hist[t2["ticket_id"]].model_version, hist[t2["ticket_id"]].step) == (2, 2)
        assert hist[t3["ticket_id"]].model_version == 3

        # replaying v1 + t2's stored observations reproduces checkpoint 2 exactly …
        bank = s.get(Bank, run.bank_id)
        batch, _ = apply.observations(s, files, sf, bank, t2["ticket_id"], None)
        assert [o.logit for o in batch] == pytest.approx(stored.tolist())
        stats = v1.update(batch)
        want = checkpoint_state(s, run_id, 2)["model"]
        for name, tensor in v1.state_dict()["model"].items():
            np.testing.assert_allclose(tensor.numpy(), want[name].numpy(), rtol=1e-5,
                                       atol=1e-6)
        assert hist[t2["ticket_id"]].loss == pytest.approx(stats.loss, rel=1e-5)
        # … while v1's logits in their place would have given a different update
        v1_again = load_strategy(s, run, 1, dim, "cpu")
        swapped = v1_again.logits(pool)
        batch = [dataclasses.replace(o, logit=float(z)) for o, z in zip(batch, swapped)]
        swapped_stats = v1_again.update(batch)
        # the update measures the policy ratio against the logits it is given (the loss is
        # dominated by terms the logits do not enter, and Adam normalises the step's size,
        # so compare the ratio it reports)
        assert swapped_stats.extra["ratio_dev"] != pytest.approx(stats.extra["ratio_dev"],
                                                                 rel=0.1)
    engine.dispose()
