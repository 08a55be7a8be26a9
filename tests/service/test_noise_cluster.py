"""Coin flips cannot win, through the real API (actor_curator's shipped defaults).

Three clusters of a bank, told apart by their embeddings: a cluster of coin-flip
problems (reward a fair coin whatever the answer), a learnable cluster whose pass rate
rises with how much of it has been trained on, and a solved cluster (pass rate 0.97:
its groups mostly have no signal). Every group's log-ratios track its advantages,
ℓ_i = c·A_i, as a real GRPO step makes them — the step raises the probability of
whichever rollouts were rewarded — so a coin flip's in-sample Û equals a learnable
problem's, and only what happens across visits tells them apart. With the defaults
before issue 25 (peaked prior ×15, raw Û) the coin-flip cluster took 0.72 of the batch.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.helpers import AUTH, bearer, running_app, wait_applied

pytestmark = pytest.mark.anyio

DIM = 16
N = 384  # 128 per cluster; with pools of 128 each problem comes back every 3 steps
NOISE, LEARNABLE, SOLVED = 0, 1, 2
G = 8
C = 0.02  # log-ratio per unit of advantage


def bank(seed: int = 0) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, DIM)) * 3
    labels = np.arange(N) % 3
    vecs = centres[labels] + rng.standard_normal((N, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [{"external_id": f"k{labels[i]}-{i}", "prompt": f"problem {i}",
             "metadata": {"cluster": int(labels[i])},
             "embedding": vecs[i].round(6).tolist()} for i in range(N)], labels


def results(chosen: list[dict], labels: np.ndarray, trained: int,
            rng: np.random.Generator) -> list[dict]:
    """Rewards by each cluster's dynamics; log-ratios c·A_i for every group."""
    p_learn = min(0.85, 0.15 + 0.0012 * trained)
    out = []
    for p in chosen:
        k = labels[p["problem_id"]]
        rate = {NOISE: 0.5, LEARNABLE: p_learn, SOLVED: 0.97}[k]
        r = (rng.random(G) < rate).astype(float)
        adv = (r - r.mean()) / (r.std() + 1e-6)
        out.append({"problem_id": p["problem_id"], "rewards": r.tolist(),
                    "log_ratios": (C * adv).tolist()})
    return out


async def test_coin_flip_cluster_gets_no_more_than_its_uniform_share(sqlite_settings):
    problems, labels = bank()
    rng = np.random.default_rng(1)
    async with running_app(sqlite_settings) as (client, _):
        r = await client.post("/v1/banks", json={"name": "noise", "embedder": "provided",
                                                 "dim": DIM}, headers=AUTH)
        bank_id = r.json()["bank_id"]
        r = await client.post(f"/v1/banks/{bank_id}/problems", json={"problems": problems},
                              headers=AUTH)
        assert r.json()["added"] == N
        r = await client.post("/v1/runs", json={"bank_id": bank_id, "strategy":
                                                "actor_curator", "seed": 3}, headers=AUTH)
        run_id, token = r.json()["run_id"], r.json()["token"]
        shares, trained = [], 0
        steps = 60
        for step in range(steps):
            r = await client.post(f"/v1/runs/{run_id}/select",
                                  json={"batch_size": 32, "pool_size": 128},
                                  headers=bearer(token))
            ticket = r.json()
            chosen = ticket["problems"]
            kinds = np.array([labels[p["problem_id"]] for p in chosen])
            shares.append([(kinds == k).mean() for k in (NOISE, LEARNABLE, SOLVED)])
            body = {"ticket_id": ticket["ticket_id"],
                    "results": results(chosen, labels, trained, rng)}
            trained += int((kinds == LEARNABLE).sum())
            r = await client.post(f"/v1/runs/{run_id}/feedback", json=body,
                                  headers=bearer(token))
            assert r.status_code == 202
            await wait_applied(client, run_id, step + 1, timeout=60)
    late = np.array(shares[-20:]).mean(axis=0)
    # uniform share of each cluster is 1/3
    assert late[NOISE] <= 1 / 3, f"noise share {late[NOISE]:.2f} above uniform's 0.33"
    assert late[LEARNABLE] > 0.45, f"learnable share only {late[LEARNABLE]:.2f}"
    assert np.array(shares[:5]).mean(axis=0)[NOISE] < 0.45  # warm-up: near uniform
