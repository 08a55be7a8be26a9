"""In a training loop each select follows an applied update. The embedded worker hands
the new weights to selection, scores the next pool and draws the next batch from it
before its commit, so such a select reads no checkpoint, scores and draws nothing — and
selects exactly what scoring and drawing inline would have selected."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sqlalchemy import select

from curator.db.models import TicketItem
from tests.service.helpers import (
    AUTH,
    bearer,
    make_bank,
    make_run,
    rollouts,
    running_app,
    select_and_report,
    wait_applied,
)

pytestmark = pytest.mark.anyio

STEPS = 8


def _items(app, ticket_id: str) -> list[tuple[int, float, float, str]]:
    state = app.state.curator
    with state.session_factory() as s:
        rows = s.execute(select(TicketItem.problem_id, TicketItem.logit, TicketItem.propensity,
                                TicketItem.source).where(TicketItem.ticket_id == ticket_id)
                         .order_by(TicketItem.rank)).all()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("strategy", ["actor_curator", "pcl", "sec"])
async def test_loop_selects_use_the_prescored_pool_and_match_inline_scoring(settings, strategy):
    params = {"dormant_steps": 1} if strategy == "actor_curator" else {}
    if strategy == "sec":
        params = {"field": "group"}
    async with running_app(settings) as (client, app):
        snapshots = app.state.curator.snapshots
        bank_id = await make_bank(client, 120)
        runs = [await make_run(client, bank_id, strategy, params, seed=3) for _ in range(2)]
        rng = np.random.default_rng(0)
        for step in range(STEPS):
            rewards = rng.integers(0, 2, size=(16, 8)).astype(float).tolist()
            log_ratios = (rng.standard_normal((16, 8)) * 0.01).tolist()
            tickets = []
            for k, (run_id, token) in enumerate(runs):
                if k == 1:
                    snapshots.forget(run_id)  # the second run always scores inline
                hits, drawn = snapshots.prescored_hits, snapshots.drawn_ahead
                r = await client.post(f"/v1/runs/{run_id}/select",
                                      json={"batch_size": 16, "pool_size": 48},
                                      headers=bearer(token))
                assert r.status_code == 200, r.text
                body = r.json()
                tickets.append(body["ticket_id"])
                assert body["model_version"] == step  # never older than the claim's
                if k == 0 and step > 0:
                    assert snapshots.prescored_hits == hits + 1, "scored inline"
                    assert snapshots.drawn_ahead == drawn + 1, "drawn inline"
                if k == 1:
                    assert snapshots.prescored_hits == hits
                    assert snapshots.drawn_ahead == drawn
                results = [{"problem_id": p["problem_id"], "rewards": rw, "log_ratios": lr}
                           for p, rw, lr in zip(body["problems"], rewards, log_ratios)]
                r = await client.post(f"/v1/runs/{run_id}/feedback",
                                      json={"ticket_id": body["ticket_id"], "results": results},
                                      headers=bearer(token))
                assert r.status_code == 202, r.text
                await wait_applied(client, run_id, step + 1)
            prescored, inline = (_items(app, t) for t in tickets)
            assert [i[0] for i in prescored] == [i[0] for i in inline]
            np.testing.assert_allclose([i[1:3] for i in prescored], [i[1:3] for i in inline],
                                       rtol=1e-6, atol=1e-9)
        info = (await client.get(f"/v1/runs/{runs[0][0]}", headers=AUTH)).json()
        assert info["model_version"] == STEPS


def test_staged_state_serves_only_the_version_it_was_staged_for():
    """The worker stages version v+1's copy and pool before its commit: a select whose
    claim still returns v must not see them; one whose claim returns v+1 takes them; a
    failed commit drops them (a retry may commit another model under the same number)."""
    from types import SimpleNamespace

    from curator.selection.prescored import Prescored
    from curator.selection.snapshots import SnapshotCache

    def never(*_):  # no misses here: a load would be a failure of the test
        raise AssertionError("the cache loaded a checkpoint")

    cache = SnapshotCache(session_factory=None, device="cpu", load=never)
    run = SimpleNamespace(id=1, bank_id=1)
    old, new = object(), object()
    cache.put(1, 2, old)

    def scores(version):
        return Prescored(version=version, start=64, bank_size=100,
                         positions=np.arange(16, dtype=np.int64), logits=np.zeros(16),
                         active=True, top_p=1.0, temperature=1.0, explore=0.0)

    cache.stage(1, 3, new, scores(3))
    assert cache.get(run, 2) is old
    assert cache.take_scores(1, 2, 64, 100, 16, 4) is None
    assert cache.take_scores(1, 3, 64, 100, 16, 4).version == 3
    assert cache.get(run, 3) is new  # the claim returned 3: committed
    assert cache.cached_version(1) == 3

    cache.stage(1, 4, object(), scores(4))
    cache.unstage(1, 4)
    assert cache.take_scores(1, 4, 64, 100, 16, 4) is None
    cache.promote(1, 4)  # nothing staged any more: no effect
    assert cache.cached_version(1) == 3


async def test_a_failed_commit_leaves_no_staged_version_behind(sqlite_settings):
    """A real failed commit (a trigger aborts version 2's history point, which the ORM
    flushes in the commit itself, after the handover was staged): the
    ticket is set aside, the run stays at version 1, the pool staged for version 2 is
    gone and the next select is served by version 1."""
    from sqlalchemy import text

    sqlite_settings.max_apply_attempts = 1
    async with running_app(sqlite_settings) as (client, app):
        state = app.state.curator
        bank_id = await make_bank(client, 120)
        run_id, token = await make_run(client, bank_id, "actor_curator", {"dormant_steps": 0})
        with state.session_factory() as s:
            s.execute(text("CREATE TRIGGER no_v2 BEFORE INSERT ON history "
                           "WHEN NEW.model_version = 2 BEGIN SELECT RAISE(ABORT, 'no v2'); "
                           "END"))
            s.commit()
        rng = np.random.default_rng(0)
        for step in range(2):
            body = await select_and_report(client, run_id, token, batch_size=16, pool_size=48,
                                           result=rollouts([1, 0, 1, 0], rng))
            assert body["model_version"] == step
            if step == 0:
                await wait_applied(client, run_id, 1)
        for _ in range(200):
            info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
            if info["tickets"].get("failed", 0):
                break
            await asyncio.sleep(0.05)
        assert info["tickets"]["failed"] == 1 and info["model_version"] == 1
        assert state.snapshots.scored_version(run_id) != 2
        body = (await client.post(f"/v1/runs/{run_id}/select",
                                  json={"batch_size": 16, "pool_size": 48},
                                  headers=bearer(token))).json()
        assert body["model_version"] == 1


async def test_a_select_scored_by_a_newer_copy_records_that_version(sqlite_settings):
    """Between a select's claim and its scoring the worker may hand a newer version over;
    the ticket (and the answer) then carry the version that scored the pool, not the
    older one the claim returned."""
    from curator.runs.strategy_store import selection_copy

    sqlite_settings.embedded_worker = False
    async with running_app(sqlite_settings) as (client, app):
        state = app.state.curator
        bank_id = await make_bank(client, 120)
        run_id, token = await make_run(client, bank_id, "actor_curator", {"dormant_steps": 0})
        from curator.db.models import Run

        with state.session_factory() as s:
            run = s.get(Run, run_id)
            strategy = state.snapshots.get(run, 0)
            # as if version 4 had been handed over after this select's claim returned 0
            state.snapshots.put(run_id, 4, selection_copy(strategy, run, strategy.dim, "cpu"))
        body = (await client.post(f"/v1/runs/{run_id}/select",
                                  json={"batch_size": 16, "pool_size": 48},
                                  headers=bearer(token))).json()
        assert body["model_version"] == 4
        from curator.db.models import Ticket

        with state.session_factory() as s:
            assert s.get(Ticket, body["ticket_id"]).model_version == 4
