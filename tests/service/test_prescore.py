"""In a training loop each select follows an applied update. The embedded worker hands
the new weights to selection, scores the next pool and draws the next batch from it
before its commit, so such a select reads no checkpoint, scores and draws nothing — and
selects exactly what scoring and drawing inline would have selected."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from curator.db.models import TicketItem
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app, wait_applied

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
