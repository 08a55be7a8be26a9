"""The in-run control report: on a run where the curator is known to help, the
comparison with its explore items says so (an interval above zero); on a uniform run it
says nothing; the estimate of uniform selection on the same pools agrees with a uniform
run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.curation.control import difference, mean_interval, uniform_on_pools
from tests.service.helpers import (
    AUTH,
    bearer,
    running_app,
    select_and_report,
    wait_applied,
)

pytestmark = pytest.mark.anyio

DIM, N, STEPS = 16, 480, 24
LEVELS = ["easy", "medium", "hard", "olympiad"]


async def _bank(client) -> int:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, DIM)) * 3
    labels = np.arange(N) % 4
    vecs = centres[labels] + rng.standard_normal((N, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    bank = (await client.post("/v1/banks", headers=AUTH, json={
        "name": "levels", "embedder": "provided", "dim": DIM})).json()["bank_id"]
    r = await client.post(f"/v1/banks/{bank}/problems", headers=AUTH, json={"problems": [
        {"external_id": f"p{i}", "prompt": f"problem {i}",
         "metadata": {"level": LEVELS[labels[i]]}, "embedding": vecs[i].round(6).tolist()}
        for i in range(N)]})
    assert r.status_code == 200
    return bank


def _result(problem: dict) -> dict:
    """`medium` problems teach (mixed rewards, log-ratios along the advantages: Û ≈ 0.05);
    the others are solved or failed by every rollout (no signal, Û = 0)."""
    if problem["metadata"]["level"] == "medium":
        rewards = [1.0, 0.0] * 4
        adv = np.array(rewards) * 2 - 1
        return {"problem_id": problem["problem_id"], "rewards": rewards,
                "log_ratios": (0.05 * adv).tolist()}
    solved = problem["metadata"]["level"] == "easy"
    return {"problem_id": problem["problem_id"], "rewards": [float(solved)] * 8,
            "log_ratios": [0.0] * 8}


async def _run(client, bank: int, strategy: str, params: dict) -> tuple[int, str]:
    r = (await client.post("/v1/runs", headers=AUTH, json={
        "bank_id": bank, "strategy": strategy, "params": params, "seed": 5})).json()
    run_id, token = r["run_id"], r["token"]
    for step in range(STEPS):
        await select_and_report(client, run_id, token, batch_size=32, pool_size=128,
                                result=_result)
        await wait_applied(client, run_id, step + 1)
    return run_id, token


async def test_the_control_group_shows_a_helping_curator_and_not_a_uniform_run(sqlite_settings):
    async with running_app(sqlite_settings) as (client, _):
        bank = await _bank(client)
        learn, token = await _run(client, bank, "actor_curator", {"dormant_steps": 2})
        flat, _ = await _run(client, bank, "uniform", {})
        v = (await client.get(f"/v1/runs/{learn}/value?window=0",
                              headers=bearer(token))).json()
        u = (await client.get(f"/v1/runs/{flat}/value?window=0", headers=AUTH)).json()

    cur, exp_ = v["curator"], v["explore"]
    assert cur["groups"] > 0 and exp_["groups"] >= 30
    # the curator's items teach more than the uniform items drawn from the same pools,
    # with an interval that excludes zero
    assert v["difference"]["low"] > 0, v["difference"]
    # and waste fewer rollouts on groups without signal
    assert cur["zero_signal"]["mean"] < exp_["zero_signal"]["mean"]
    assert cur["wasted_per_useful"] < exp_["wasted_per_useful"]
    assert v["wasted_ratio"] == pytest.approx(cur["wasted_per_useful"]
                                              / exp_["wasted_per_useful"])
    assert exp_["rollouts"] == 8 * exp_["groups"]

    # a uniform run has no curator items: nothing to claim
    assert u["curator"]["groups"] == 0 and u["difference"]["mean"] is None
    assert u["explore"]["groups"] == 32 * STEPS
    # the curator run's estimate of uniform on its own pools agrees with what the
    # uniform run actually got
    est, direct = v["uniform_estimate"], u["explore"]["utility"]["mean"]
    assert est["low"] <= direct <= est["high"], (est, direct)


def test_estimates_by_hand():
    m = mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.mean == 2.5 and math.isclose(m.high - m.mean, 1.96 * 1.2909944 / 2, rel_tol=1e-4)
    assert mean_interval(np.array([])).mean is None
    d = difference(np.array([2.0, 2.1, 1.9, 2.0]), np.array([1.0, 1.1, 0.9, 1.0]))
    assert math.isclose(d.mean, 1.0) and d.low > 0.8
    # a pool of 4: the curator drew the one worth 1.0; one explore item (0.0) of the 3
    # others: the pool's mean is (1.0 + 3 · 0.0) / 4
    e = uniform_on_pools([(np.array([1.0]), np.array([0.0]), 4)])
    assert math.isclose(e.mean, 0.25)
    # a uniform run (no curator items): the mean of the explore items
    e = uniform_on_pools([(np.array([]), np.array([1.0, 3.0]), 10),
                          (np.array([]), np.array([2.0, 2.0]), 10)])
    assert math.isclose(e.mean, 2.0) and e.low < 2.0 < e.high
