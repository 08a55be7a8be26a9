"""actor_curator learns to put mass where the realised improvement is."""

from __future__ import annotations

import numpy as np
import pytest

from curator.curation.sampler import sample, softmax
from curator.curation.strategies import build_strategy

DIM = 16


def _train(strategy, emb, labels, utility_a: float, steps: int = 30) -> None:
    rng = np.random.default_rng(2)
    train = np.arange(300)
    for _ in range(steps):
        pool_idx = rng.choice(train, size=128, replace=False)
        pool = _pool(pool_idx, emb)
        z = strategy.logits(pool)
        sel = sample(z, 64, rng, top_p=1.0)
        batch = []
        for j in sel.indices:
            i = int(pool_idx[j])
            u = utility_a if labels[i] == 1 else 0.0
            batch.append(_obs(i, emb[i], float(z[j]), u))
        strategy.update(batch)


def _pool(ids, emb):
    from curator.curation.types import Pool

    return Pool(problem_ids=np.asarray(ids, dtype=np.int64), embeddings=emb[ids])


def _obs(pid, e, logit, u):
    from curator.curation.types import Observation

    return Observation(
        problem_id=pid, logit=logit, propensity=0.0, source="curator", embedding=e,
        category=None, utility=u, utility_kind="ratio", mean_reward=None,
        mean_abs_advantage=None,
    )  # fmt: skip


def _mass_on_a(strategy, emb, labels) -> float:
    held_out = np.arange(300, 400)
    q = softmax(strategy.logits(_pool(held_out, emb)))
    return float(q[labels[held_out] == 1].sum())


def test_learns_cluster_with_positive_utility(clusters) -> None:
    emb, labels = clusters
    s = build_strategy("actor_curator", {"dormant_steps": 0}, dim=DIM, seed=0)
    assert _mass_on_a(s, emb, labels) == pytest.approx(0.5)
    _train(s, emb, labels, utility_a=1e-3)
    assert _mass_on_a(s, emb, labels) > 0.8


def test_zero_utility_stays_uniform(clusters) -> None:
    emb, labels = clusters
    s = build_strategy("actor_curator", {"dormant_steps": 0}, dim=DIM, seed=0)
    _train(s, emb, labels, utility_a=0.0)
    assert _mass_on_a(s, emb, labels) == pytest.approx(0.5, abs=0.02)


def test_warm_up_stats_and_skips(clusters) -> None:
    emb, _ = clusters
    s = build_strategy("actor_curator", {"dormant_steps": 2, "fallback": "abs_advantage"},
                       dim=DIM, seed=0)
    assert not s.active()
    empty = s.update([_obs(1, emb[1], 0.0, None)])
    assert empty.loss is None and empty.extra["updates"] == 0.0  # nothing applied
    batch = [_obs(i, emb[i], 0.0, 2e-3) for i in range(4)]
    batch[0] = _obs(0, emb[0], 0.0, 1e-3)
    from dataclasses import replace

    batch[1] = replace(batch[1], utility_kind="abs_advantage")
    stats = s.update(batch)
    assert stats.mean_utility == pytest.approx((1.0 + 2.0 * 3) / 4)  # amplified by 1000
    assert stats.extra["fallback_share"] == 0.25 and stats.extra["updates"] == 1.0
    assert stats.loss is not None and not s.active()
    # window: problem 0 now averages 1e-3 and 3e-3
    stats = s.update([_obs(0, emb[0], 0.0, 3e-3), _obs(5, emb[5], 0.0, 0.0)])
    assert stats.mean_utility == pytest.approx((2.0 + 0.0) / 2)
    assert s.active()


def test_standardize_option(clusters) -> None:
    emb, _ = clusters
    s = build_strategy("actor_curator", {"scaling": "standardize"}, dim=DIM, seed=0)
    stats = s.update([_obs(i, emb[i], 0.0, float(i) * 1e-3) for i in range(4)])
    assert stats.mean_utility == pytest.approx(0.0, abs=1e-9)


def test_minibatches_sets_the_minibatch_size_from_the_batch(clusters) -> None:
    """`minibatches: 4` splits a 64-item batch into the default 16-item minibatches (the
    same update, bit for bit) and a 256-item one into 64-item minibatches (4 per epoch)."""
    emb, labels = clusters
    rng = np.random.default_rng(5)

    def batch(n: int, strategy) -> list:
        ids = rng.choice(len(emb), n, replace=False)
        z = strategy.logits(_pool(ids, emb))
        return [_obs(int(i), emb[i], float(zi), float(labels[i]) * rng.random())
                for i, zi in zip(ids, z)]

    params = {"dormant_steps": 0, "max_kl": 0.0}  # no early stop: every step runs
    fixed = build_strategy("actor_curator", params, dim=DIM, seed=1)
    split = build_strategy("actor_curator", params | {"minibatches": 4}, dim=DIM, seed=1)
    b64 = batch(64, fixed)
    a, b = fixed.update(b64), split.update(b64)
    assert a.extra["opt_steps"] == b.extra["opt_steps"] == 4 * 4
    assert a.loss == b.loss
    pool = _pool(np.arange(100), emb)
    np.testing.assert_array_equal(fixed.logits(pool), split.logits(pool))

    b256 = batch(256, fixed)
    assert fixed.update(b256).extra["opt_steps"] == 4 * 16
    assert split.update(b256).extra["opt_steps"] == 4 * 4
    with pytest.raises(Exception, match="minibatches"):
        build_strategy("actor_curator", {"minibatches": -1}, dim=DIM, seed=1)


def test_one_state_dict_loads_into_independent_copies(clusters) -> None:
    """Two curators loaded from one state dict do not share optimiser moments: training
    one leaves the other (and the dict) as loaded."""
    emb, labels = clusters
    params = {"dormant_steps": 0, "max_kl": 0.0}
    source = build_strategy("actor_curator", params, dim=DIM, seed=1)
    _train(source, emb, labels, 0.05, steps=3)  # optimiser moments exist
    state = source.state_dict()
    a = build_strategy("actor_curator", params, dim=DIM, seed=1)
    b = build_strategy("actor_curator", params, dim=DIM, seed=1)
    a.load_state_dict(state)
    b.load_state_dict(state)
    _train(a, emb, labels, 0.05, steps=2)
    fresh = build_strategy("actor_curator", params, dim=DIM, seed=1)
    fresh.load_state_dict(source.state_dict())
    for x, y in ((b, fresh), (b, source)):
        for (name, u), (_, v) in zip(x.state_dict()["optimizer"].items(),
                                     y.state_dict()["optimizer"].items()):
            for key in ("exp_avg", "exp_avg_sq"):
                np.testing.assert_array_equal(u[key].numpy(), v[key].numpy(), err_msg=name)
