"""init_from: a new run starts from another run's learned curator (scorer and pass-rate
head), not its optimiser, cursor or statistics, and without a dormant period; a source
whose bank has another dimension, or another strategy, is refused with a 422."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curator.db.models import Run
from curator.runs.strategy_store import load_strategy
from tests.service.helpers import (
    AUTH,
    make_bank,
    make_run,
    rollouts,
    running_app,
    select_and_report,
    wait_applied,
)

pytestmark = pytest.mark.anyio


async def _train(client, run_id: int, token: str, steps: int = 4) -> None:
    rng = np.random.default_rng(0)
    for step in range(steps):
        await select_and_report(client, run_id, token, batch_size=16, pool_size=48,
                                result=rollouts([1.0, 0.0, 1.0], rng, scale=0.05))
        await wait_applied(client, run_id, step + 1)


async def test_a_warm_start_loads_the_source_curator_and_nothing_else(settings):
    async with running_app(settings) as (client, app):
        state = app.state.curator
        bank = await make_bank(client, 120)
        src, token = await make_run(client, bank, "actor_curator", {"dormant_steps": 1})
        await _train(client, src, token)
        r = await client.post("/v1/runs", headers=AUTH, json={
            "bank_id": bank, "strategy": "actor_curator", "init_from": src, "seed": 9})
        assert r.status_code == 201, r.text
        new = r.json()
        assert new["params"]["dormant_steps"] == 0
        with state.session_factory() as s:
            src_run, new_run = s.get(Run, src), s.get(Run, new["run_id"])
            donor = load_strategy(s, src_run, src_run.model_version, 256, "cpu")
            warm = load_strategy(s, new_run, 0, 256, "cpu")
            cold = load_strategy(s, src_run, 0, 256, "cpu")
        for a, b in zip(donor._model.parameters(), warm._model.parameters(), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(donor._head.parameters(), warm._head.parameters(), strict=True):
            assert torch.equal(a, b)
        assert not all(torch.equal(a, b) for a, b in zip(donor._model.parameters(),
                                                          cold._model.parameters()))
        assert warm._updates == 0 and len(warm._stats) == 0 and not warm._opt.state
        assert warm.active()  # no dormant period: it steers from its first select
        info = (await client.get(f"/v1/runs/{new['run_id']}", headers=AUTH)).json()
        assert info["stats"]["init_from"] == src and info["model_version"] == 0
        # it selects and learns like any run
        await _train(client, new["run_id"], new["token"], steps=2)


async def test_init_from_refuses_what_does_not_fit(settings):
    async with running_app(settings) as (client, _):
        bank = await make_bank(client, 60)
        other = await make_bank(client, 60, name="wide", embedder="hash", dim=128)
        src, _ = await make_run(client, bank, "actor_curator")
        uni, _ = await make_run(client, bank, "uniform")
        cases = [
            ({"bank_id": other, "strategy": "actor_curator", "init_from": src}, 422),
            ({"bank_id": bank, "strategy": "actor_curator", "init_from": uni}, 422),
            ({"bank_id": bank, "strategy": "uniform", "init_from": uni}, 422),
            ({"bank_id": bank, "strategy": "actor_curator", "init_from": src,
              "params": {"hidden": 32}}, 422),
            ({"bank_id": bank, "strategy": "actor_curator", "init_from": 4242}, 404),
        ]
        for body, status in cases:
            r = await client.post("/v1/runs", headers=AUTH, json=body)
            assert r.status_code == status, (body, r.text)
        runs = (await client.get("/v1/runs", headers=AUTH)).json()["runs"]
        assert len(runs) == 2  # nothing was created
