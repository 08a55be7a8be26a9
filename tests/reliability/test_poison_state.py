"""No input can poison a run: the extremes the API accepts, per strategy, leave every
stored state finite and every read answering; a strategy state that goes non-finite
anyway (a corrupt training checkpoint) is refused by the worker with the previous version
still serving; a warm start refuses a broken source."""

from __future__ import annotations

import asyncio

import pytest
import torch
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from curator.curation.checkpoint import dumps, loads, non_finite_keys
from curator.db.models import Checkpoint, Ticket
from curator.runs.feedback import MAX_ABS_LOG_RATIO, MAX_ABS_REWARD, MAX_ABS_UTILITY
from curator.runs.strategy_store import checkpoint_state
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app, wait_applied

pytestmark = pytest.mark.anyio

R, L, U = MAX_ABS_REWARD, MAX_ABS_LOG_RATIO, MAX_ABS_UTILITY

# The largest values the contract accepts, in the shapes that overflowed before: huge
# rewards of one sign, of both signs, one huge reward among zeros, log-ratios at the bound.
EXTREMES = [
    lambda i: {"rewards": [R, R, R, R], "log_ratios": [L, L, L, L]},
    lambda i: {"rewards": [R, -R, R, -R], "log_ratios": [L, -L, L, -L]},
    lambda i: {"rewards": [R, 0.0, 0.0, 0.0], "log_ratios": [-L, 0.0, L, 0.0]},
    lambda i: {"rewards": [-R, 0.0, R, 0.0]},
    lambda i: {"utility": U if i % 2 else -U},
]

STRATEGIES = {
    "actor_curator": {"dormant_steps": 0, "hidden": 16},
    "pcl": {},
    "learnability": {},
    "mopps": {},
    "sec": {"field": "group"},
    "uniform": {},
}


def _engine(settings):
    return create_engine(settings.sqlalchemy_url)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_the_extremes_it_accepts_leave_every_state_finite(settings, strategy):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40), strategy,
                                       STRATEGIES[strategy])
        sel, fb = f"/v1/runs/{run_id}/select", f"/v1/runs/{run_id}/feedback"
        sent = 0
        for shape in EXTREMES:
            t = (await client.post(sel, json={"batch_size": 8, "pool_size": 16},
                                   headers=bearer(token))).json()
            r = await client.post(fb, headers=bearer(token), json={
                "ticket_id": t["ticket_id"],
                "results": [{"problem_id": p["problem_id"], **shape(i)}
                            for i, p in enumerate(t["problems"])]})
            if r.status_code == 422:  # a strategy that needs rewards refuses bare utilities
                assert "rewards" in r.text, r.text
                continue
            assert r.status_code == 202, r.text
            sent += 1
        info = await wait_applied(client, run_id, sent)
        assert info["tickets"]["failed"] == 0, info
        assert info["model_version"] == sent
        engine = _engine(settings)
        with Session(engine) as s:
            state = checkpoint_state(s, run_id, sent)
        engine.dispose()
        assert state is not None and non_finite_keys(state) == []
        r = await client.post(sel, json={"batch_size": 8, "pool_size": 16},
                              headers=bearer(token))
        assert r.status_code == 200, r.text
        assert all(0 < p["propensity"] <= 1 for p in r.json()["problems"])
        for path in (f"/v1/runs/{run_id}/distribution", f"/v1/compare?runs={run_id}",
                     f"/v1/runs/{run_id}/value"):
            r = await client.get(path, headers=AUTH)
            assert r.status_code == 200, (path, r.text)


def _poison_training_part(settings, run_id: int, version: int) -> list[str]:
    """NaN into the optimiser moments of a stored checkpoint (the part only training
    reads): selection still works from it, the next update would not."""
    engine = _engine(settings)
    with engine.begin() as c:
        blob = c.execute(select(Checkpoint.blob).where(
            Checkpoint.run_id == run_id, Checkpoint.version == version)).scalar_one()
        state = loads(blob)
        poisoned = []

        def walk(node, path):
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(v, torch.Tensor) and v.is_floating_point():
                        node[k] = torch.full_like(v, float("nan"))
                        poisoned.append(f"{path}{k}")
                    else:
                        walk(v, f"{path}{k}.")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{path}{i}.")

        walk(state, "")
        c.execute(update(Checkpoint).where(Checkpoint.run_id == run_id,
                                           Checkpoint.version == version)
                  .values(blob=dumps(state)))
    engine.dispose()
    return poisoned


async def _step(client, run_id, token, rewards=(1.0, 0.0, 1.0, 0.0)):
    t = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                           json={"batch_size": 8, "pool_size": 16})).json()
    r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
        "ticket_id": t["ticket_id"],
        "results": [{"problem_id": p["problem_id"], "rewards": list(rewards),
                     "log_ratios": [0.01 * (i % 3), -0.01, 0.02, 0.0]}
                    for i, p in enumerate(t["problems"])]})
    assert r.status_code == 202, r.text
    return t["ticket_id"]


async def test_a_non_finite_update_is_refused_and_the_previous_version_serves(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=40), "actor_curator",
                                       {"dormant_steps": 0, "hidden": 16})
        for _ in range(2):
            await _step(client, run_id, token)
        await wait_applied(client, run_id, 2)
    assert _poison_training_part(settings, run_id, 2), "no float tensor in the blob"

    # a fresh process (its worker loads the stored version, as after a restart)
    async with running_app(settings) as (client, _):
        bad = await _step(client, run_id, token)
        for _ in range(200):
            info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
            if info["tickets"]["failed"]:
                break
            await asyncio.sleep(0.05)
        assert info["tickets"]["failed"] == 1 and info["model_version"] == 2, info
        engine = _engine(settings)
        with engine.connect() as c:
            state, error = c.execute(select(Ticket.state, Ticket.error)
                                     .where(Ticket.id == bad)).one()
            versions = list(c.scalars(select(Checkpoint.version)
                                      .where(Checkpoint.run_id == run_id)))
        engine.dispose()
        assert state == "failed" and "non-finite" in error, error
        assert max(versions) == 2  # nothing of the broken update was stored

        # the version before it serves selection and the admin views
        r = await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                              json={"batch_size": 8, "pool_size": 16})
        assert r.status_code == 200, r.text
        r = await client.get(f"/v1/runs/{run_id}/distribution", headers=AUTH)
        assert r.status_code == 200, r.text


async def test_a_warm_start_refuses_a_broken_source(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=40)
        params = {"dormant_steps": 0, "hidden": 16}
        source, token = await make_run(client, bank_id, "actor_curator", params)
        await _step(client, source, token)
        await wait_applied(client, source, 1)

        engine = _engine(settings)
        with engine.begin() as c:
            sel = c.execute(select(Checkpoint.selection).where(
                Checkpoint.run_id == source, Checkpoint.version == 1)).scalar_one()
            state = loads(sel)
            key = next(iter(state["model"]))
            state["model"][key] = torch.full_like(state["model"][key], float("inf"))
            c.execute(update(Checkpoint).where(Checkpoint.run_id == source,
                                               Checkpoint.version == 1)
                      .values(selection=dumps(state)))
        r = await client.post("/v1/runs", headers=AUTH, json={
            "bank_id": bank_id, "strategy": "actor_curator", "params": params,
            "init_from": source})
        assert r.status_code == 422, r.text
        assert "non-finite" in r.json()["error"]["message"], r.text
        assert r.json()["error"]["details"]["keys"] == [f"model.{key}"], r.text

        with engine.begin() as c:  # a checkpoint that cannot be read at all
            c.execute(update(Checkpoint).where(Checkpoint.run_id == source,
                                               Checkpoint.version == 1)
                      .values(selection=b"not a checkpoint"))
        engine.dispose()
        r = await client.post("/v1/runs", headers=AUTH, json={
            "bank_id": bank_id, "strategy": "actor_curator", "params": params,
            "init_from": source})
        assert r.status_code == 422, r.text
        assert "cannot be read" in r.json()["error"]["message"], r.text
        runs = (await client.get("/v1/runs", headers=AUTH)).json()
        assert len(runs["runs"] if isinstance(runs, dict) else runs) == 1  # nothing created
