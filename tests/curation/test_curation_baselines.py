"""Scoring rules of the baselines with explicit numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.curation.sampler import softmax
from curator.curation.strategies import build_strategy
from curator.curation.strategies.pcl import pcl_score

DIM = 4


def test_uniform(make_obs, make_pool) -> None:
    s = build_strategy("uniform", {}, dim=DIM, seed=0)
    pool = make_pool(np.arange(5), np.ones((5, DIM)))
    assert s.logits(pool).tolist() == [0.0] * 5 and not s.active()
    stats = s.update([make_obs(1, np.ones(DIM), mean_reward=0.25), make_obs(2, np.ones(DIM))])
    assert stats.mean_reward == 0.25 and stats.loss is None


def test_learnability_ema_and_logits(make_obs, make_pool) -> None:
    s = build_strategy("learnability", {}, dim=DIM, seed=0)
    e = np.zeros(DIM)
    s.update([make_obs(7, e, mean_reward=1.0), make_obs(8, e, mean_reward=0.25)])
    s.update([make_obs(7, e, mean_reward=0.0), make_obs(9, e)])  # 9: no rewards, ignored
    # 7: first sighting sets p = 1.0, then 0.3 * 0 + 0.7 * 1.0 = 0.7; 8: 0.25; 5: prior 0.5
    pool = make_pool(np.array([7, 8, 5, 9]), np.zeros((4, DIM)))
    assert s.pass_rates(pool.problem_ids) == pytest.approx([0.7, 0.25, 0.5, 0.5])
    expected = np.log(np.array([0.21, 0.1875, 0.25, 0.25]) + 1e-6)
    assert s.logits(pool) == pytest.approx(expected)
    # sampling with temperature 1 is proportional to p(1-p)
    assert softmax(s.logits(pool)) == pytest.approx(
        np.array([0.21, 0.1875, 0.25, 0.25]) / 0.8975, abs=1e-5
    )
    hot = build_strategy("learnability", {"temperature": 0.5}, dim=DIM, seed=0)
    assert hot.logits(pool) == pytest.approx(2 * np.log(np.full(4, 0.25) + 1e-6))
    assert s.active() and s.requires_rewards


def test_sec_q_update_and_pool_mass(make_obs, make_pool) -> None:
    s = build_strategy("sec", {}, dim=DIM, seed=0)  # alpha 0.5, temperature 0.2
    e = np.zeros(DIM)
    s.update(
        [
            make_obs(1, e, mean_abs_adv=0.2, category="easy"),
            make_obs(2, e, mean_abs_adv=0.4, category="easy"),
            make_obs(3, e, mean_abs_adv=1.0, category="hard"),
            make_obs(4, e, mean_abs_adv=0.5, category=None),
        ]
    )
    assert s.q == pytest.approx({"easy": 0.15, "hard": 0.5, "__none__": 0.25})
    s.update([make_obs(1, e, mean_abs_adv=0.1, category="easy")])
    assert s.q["easy"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.15)  # 0.125
    cats = ["easy", "easy", "hard", "medium", "medium", "medium"]
    z = s.logits(make_pool(np.arange(6), np.zeros((6, DIM)), cats))
    assert z[0] == pytest.approx(0.125 / 0.2 - math.log(2))
    assert z[3] == pytest.approx(-math.log(3))
    q = softmax(z)
    arms = np.exp(np.array([0.125, 0.5, 0.0]) / 0.2)
    arms /= arms.sum()
    assert [q[:2].sum(), q[2], q[3:].sum()] == pytest.approx(arms.tolist())
    assert q[0] == pytest.approx(q[1]) and q[3] == pytest.approx(q[5])  # uniform within


def test_pcl_score_and_learning(make_obs, make_pool, clusters) -> None:
    assert pcl_score(np.array([0.5, 0.0, 1.0, 0.25])) == pytest.approx(
        [1.0, 0.0, 0.0, 2 * math.sqrt(0.1875)]
    )
    emb, labels = clusters
    s = build_strategy("pcl", {"hidden": 64}, dim=16, seed=0)
    pool = make_pool(np.arange(400), emb)
    z0 = s.logits(pool)
    assert z0 == pytest.approx(np.full(400, math.log(1 + 1e-6) / 0.1))  # new head: p = 0.5
    rng = np.random.default_rng(1)
    for _ in range(40):
        idx = rng.choice(400, size=64, replace=False)
        s.update(
            [make_obs(int(i), emb[i], mean_reward=1.0 if labels[i] == 1 else 0.5) for i in idx]
        )
    p = s.predict(emb)
    assert p[labels == 1].mean() > 0.85 and abs(p[labels == 0].mean() - 0.5) < 0.1
    z = s.logits(pool)
    assert z[labels == 0].min() > z[labels == 1].max()  # near-0.5 problems preferred
