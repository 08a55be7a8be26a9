"""The feedback contract (runs/feedback.py): results in several posts, replays, conflicts,
refusals that name the problem, the TTL of a partly reported ticket, and the property
that nothing a client got a 2xx for is lost — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import create_engine, select

from curator.db.models import Feedback, Ticket
from curator.worker.loop import close_expired_partial
from tests.reliability.support import assert_applied_exactly_once
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app, wait_applied

pytestmark = pytest.mark.anyio


def result(pid: int, salt: float = 0.0) -> dict:
    return {"problem_id": pid, "rewards": [1.0, 0.0, float(pid % 2), 0.0],
            "log_ratios": [0.02 + salt, -0.01, 0.01, 0.0]}


async def _ticket(client, run_id, token, batch=8):
    r = await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                          json={"batch_size": batch, "pool_size": 2 * batch})
    assert r.status_code == 200, r.text
    return r.json()


def _kept(url: str, ticket_id: str) -> dict[int, list]:
    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(select(Feedback.problem_id, Feedback.log_ratios)
                         .where(Feedback.ticket_id == ticket_id)).all()
    engine.dispose()
    return {pid: lr for pid, lr in rows}


async def test_halves_are_kept_and_the_ticket_is_applied_once_complete(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40), "actor_curator")
        t = await _ticket(client, run_id, token)
        ids = [p["problem_id"] for p in t["problems"]]
        post = f"/v1/runs/{run_id}/feedback"
        r1 = await client.post(post, headers=bearer(token), json={
            "ticket_id": t["ticket_id"], "results": [result(i) for i in ids[:4]]})
        assert r1.status_code == 202, r1.text
        assert r1.json() | {"ticket_id": None} == {
            "ticket_id": None, "accepted": 4, "state": "partial", "replayed": False,
            "reported": 4, "expected": 8}
        info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
        assert info["tickets"]["partial"] == 1 and info["tickets"]["reported"] == 0
        await asyncio.sleep(0.3)  # not applied early
        assert (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()[
            "tickets"]["applied"] == 0
        # the first half again (a retry) is a replay; the second half completes it
        again = await client.post(post, headers=bearer(token), json={
            "ticket_id": t["ticket_id"], "results": [result(i) for i in ids[:4]]})
        assert again.status_code == 202 and again.json()["replayed"] is True
        assert again.headers["Curator-Replayed"] == "true" and again.json()["accepted"] == 0
        r2 = await client.post(post, headers=bearer(token), json={
            "ticket_id": t["ticket_id"], "results": [result(i) for i in ids[2:]]})
        assert r2.status_code == 202, r2.text  # overlapping: the repeated two are replays
        assert (r2.json()["accepted"], r2.json()["state"], r2.json()["reported"]) == \
            (4, "reported", 8)
        info = await wait_applied(client, run_id, 1)
        assert info["tickets"]["partial"] == 0
    assert sorted(_kept(settings.sqlalchemy_url, t["ticket_id"])) == sorted(ids)
    engine = create_engine(settings.sqlalchemy_url)
    assert_applied_exactly_once(engine, run_id, 1)
    engine.dispose()


async def test_conflicts_and_refusals_change_nothing(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40), "actor_curator")
        t = await _ticket(client, run_id, token)
        ids = [p["problem_id"] for p in t["problems"]]
        post = f"/v1/runs/{run_id}/feedback"

        async def send(results, **extra):
            return await client.post(post, headers=bearer(token), json={
                "ticket_id": t["ticket_id"], "results": results, **extra})

        assert (await send([result(i) for i in ids[:3]])).status_code == 202
        # a different value for a kept problem, beside a new one: 409, neither is kept
        r = await send([result(ids[0], salt=0.5), result(ids[5])])
        assert r.status_code == 409, r.text
        assert r.json()["error"]["details"]["problem_ids"] == [ids[0]]
        # not in the ticket / one rollout without a utility / out of bounds: 422, named
        outsider = max(ids) + 1000
        r = await send([result(ids[6]), result(outsider)])
        assert r.status_code == 422 and r.json()["error"]["details"]["problem_ids"] == [outsider]
        r = await send([{"problem_id": ids[6], "rewards": [1.0]}])
        assert r.status_code == 422 and "one rollout" in r.json()["error"]["message"]
        assert r.json()["error"]["details"]["problem_ids"] == [ids[6]]
        assert (await send([{"problem_id": ids[6], "utility": 0.1, "rewards": [1.0]}])
                ).status_code == 202  # a utility sent with it is fine
        for bad in ({"rewards": [1e39, 1e39]}, {"rewards": [1e300, 0.0]},
                    {"rewards": [1.0, 0.0], "log_ratios": [800.0, 0.0]},
                    {"utility": 1e40}):
            r = await send([{"problem_id": ids[7], **bad}])
            assert r.status_code == 422, (bad, r.text)
        assert (await send([], final=False)).status_code == 422  # nothing to send
        assert set(_kept(settings.sqlalchemy_url, t["ticket_id"])) == {*ids[:3], ids[6]}
        # `final`: apply with what it holds; later results for the others: 409
        r = await send([], final=True)
        assert r.status_code == 202 and r.json()["state"] == "reported", r.text
        await wait_applied(client, run_id, 1)
        r = await send([result(ids[7])])
        assert r.status_code == 409 and r.json()["error"]["details"]["problem_ids"] == [ids[7]]
        r = await send([result(i) for i in ids[:3]])  # exact repeats stay replays
        assert r.status_code == 202 and r.json() | {"ticket_id": None} == {
            "ticket_id": None, "accepted": 0, "state": "applied", "replayed": True,
            "reported": 4, "expected": 8}
        # the run still serves: nothing above poisoned it
        assert (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                  json={"batch_size": 4})).status_code == 200
        assert (await client.get(f"/v1/runs/{run_id}/distribution", headers=AUTH)
                ).status_code == 200


async def test_a_partly_reported_ticket_past_its_ttl_is_applied_with_what_it_holds(settings):
    settings.ticket_ttl_s = 1.0
    async with running_app(settings) as (client, app):
        run_id, token = await make_run(client, await make_bank(client, n=40))
        post = f"/v1/runs/{run_id}/feedback"
        a, b = await _ticket(client, run_id, token), await _ticket(client, run_id, token)
        for t in (a, b):
            r = await client.post(post, headers=bearer(token), json={
                "ticket_id": t["ticket_id"],
                "results": [result(p["problem_id"]) for p in t["problems"][:3]]})
            assert r.json()["state"] == "partial"
        await asyncio.sleep(1.3)
        # a late post on `a` is refused (not kept) and closes it with the three it holds
        r = await client.post(post, headers=bearer(token), json={
            "ticket_id": a["ticket_id"], "results": [result(a["problems"][5]["problem_id"])]})
        assert r.status_code == 410, r.text
        details = r.json()["error"]["details"]
        assert details["closed"] is True and details["reported"] == 3
        # `b` is never posted to again: the worker's sweep closes it (here or in the
        # embedded worker's own sweep, whichever runs first)
        closed = close_expired_partial(app.state.curator.session_factory, 1.0)
        assert closed in ([b["ticket_id"]], [])
        for t in (a, b):
            await app.state.curator.queue.put(t["ticket_id"])
        info = await wait_applied(client, run_id, 2)
        assert info["tickets"]["partial"] == 0
    for t in (a, b):
        assert len(_kept(settings.sqlalchemy_url, t["ticket_id"])) == 3


async def test_random_splits_repeats_and_conflicts_lose_nothing(sqlite_settings):
    """Property: for random sequences of posts (splits, overlaps, exact repeats,
    conflicting values, concurrent sends), every result answered 2xx is kept with the
    values first sent, nothing answered 4xx is, and each ticket is applied once."""
    rng = random.Random(7)
    async with running_app(sqlite_settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=120), "actor_curator",
                                       {"dormant_steps": 0})
        post = f"/v1/runs/{run_id}/feedback"
        truth: dict[str, dict[int, list]] = {}
        tickets = [await _ticket(client, run_id, token, batch=6) for _ in range(8)]

        async def send(t, chunk, salt, final=False):
            body = {"ticket_id": t["ticket_id"], "results": [result(i, salt) for i in chunk]}
            if final:
                body["final"] = True
            return chunk, salt, await client.post(post, headers=bearer(token), json=body)

        for t in tickets:
            ids = [p["problem_id"] for p in t["problems"]]
            sends = []
            for _ in range(rng.randint(2, 6)):
                chunk = rng.sample(ids, rng.randint(1, len(ids)))
                salt = rng.choice([0.0, 0.0, 0.0, 0.3])  # sometimes a conflicting value
                sends.append(send(t, chunk, salt))
            answers = list(await asyncio.gather(*sends))  # concurrent posts, one ticket
            assert all(r.status_code in (202, 409) for _, _, r in answers), \
                [r.text for _, _, r in answers]
            stored = _kept(sqlite_settings.sqlalchemy_url, t["ticket_id"])
            # every 2xx post's results are kept with exactly its values …
            ok = [(chunk, salt) for chunk, salt, r in answers if r.status_code == 202]
            for chunk, salt in ok:
                assert all(stored.get(i) == result(i, salt)["log_ratios"] for i in chunk)
            # … and nothing is kept that no 2xx post sent
            assert set(stored) == {i for chunk, _ in ok for i in chunk}
            truth[t["ticket_id"]] = stored
            if len(stored) < len(ids):
                chunk, salt, r = await send(t, [], 0.0, final=True)
                assert r.status_code == 202 and r.json()["state"] == "reported"
        await wait_applied(client, run_id, len(tickets))
    engine = create_engine(sqlite_settings.sqlalchemy_url)
    with engine.connect() as c:
        states = c.scalars(select(Ticket.state).where(Ticket.run_id == run_id)).all()
    assert states == ["applied"] * len(tickets)
    for tid, kept in truth.items():
        assert _kept(sqlite_settings.sqlalchemy_url, tid) == kept
    assert_applied_exactly_once(engine, run_id, len(tickets))
    engine.dispose()
