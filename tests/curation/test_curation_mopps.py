"""`mopps`: the Beta posterior update with forgetting (explicit numbers), the Thompson
draw's preference and determinism, its state, parameter checks and bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curator.curation.checkpoint import dumps, loads
from curator.curation.sampler import sample
from curator.curation.strategies import STRATEGIES, StrategyError, build_strategy
from curator.curation.strategies.mopps import MoppsStrategy

DIM = 4
E = np.zeros(DIM)


def _mopps(**params) -> MoppsStrategy:
    s = build_strategy("mopps", params, dim=DIM, seed=0)
    assert isinstance(s, MoppsStrategy)
    return s


def _post(s: MoppsStrategy, *ids: int) -> np.ndarray:
    """[[α, β], ...] for `ids`."""
    a, b = s.posterior(np.array(ids))
    return np.stack([a, b], axis=1)


def _is_prior(s: MoppsStrategy, pid: int) -> bool:
    return _post(s, pid).tolist() == [[s.params.prior_alpha, s.params.prior_beta]]


def test_registered_with_its_attributes(make_pool) -> None:
    assert STRATEGIES["mopps"] is MoppsStrategy
    s = _mopps()
    assert (s.name, s.category_field, s.requires_rewards, s.uses_embeddings) == (
        "mopps", None, True, False)
    assert (s.top_p, s.temperature) == (1.0, 1.0)
    assert s.active()  # no dormant period by default
    z = s.logits(make_pool(np.arange(5), np.zeros((5, 0))))  # no embeddings needed
    assert z.shape == (5,) and np.all(np.isfinite(z))
    assert s.logits(make_pool(np.zeros(0), np.zeros((0, 0)))).shape == (0,)


def test_posterior_update_by_hand(make_obs) -> None:
    s = _mopps()  # prior (1, 1), decay 0.5, group_size 8
    s.update([make_obs(7, E, mean_reward=0.75), make_obs(8, E, mean_reward=1.5),
              make_obs(9, E), make_obs(10, E, mean_reward=float("nan"))])
    # 7: 0.5·1 + 0.5·1 + 8·0.75 = 7, 0.5·1 + 0.5·1 + 8·0.25 = 3
    # 8: 1.5 is clipped to 1 → (9, 1); 9 (no rewards) and 10 (NaN) stay at the prior
    assert _post(s, 7, 8, 9, 10, 11) == pytest.approx(
        np.array([(7, 3), (9, 1), (1, 1), (1, 1), (1, 1)]))
    assert len(s) == 2
    s.update([make_obs(7, E, mean_reward=0.25)])
    # 0.5·7 + 0.5·1 + 8·0.25 = 6, 0.5·3 + 0.5·1 + 8·0.75 = 8
    assert _post(s, 7) == pytest.approx(np.array([(6, 8)]))

    plain = _mopps(decay=1.0)  # no forgetting: the conjugate Beta–Binomial update
    for r in (0.75, 0.25):
        plain.update([make_obs(7, E, mean_reward=r)])
    assert _post(plain, 7) == pytest.approx(np.array([(1 + 6 + 2, 1 + 2 + 6)]))

    last = _mopps(decay=0.0)  # only the last visit, on top of the prior
    for r in (0.75, 0.25):
        last.update([make_obs(7, E, mean_reward=r)])
    assert _post(last, 7) == pytest.approx(np.array([(1 + 2, 1 + 6)]))

    other = _mopps(prior_alpha=2.0, prior_beta=3.0, group_size=4.0)
    other.update([make_obs(1, E, mean_reward=0.5)])
    assert _post(other, 1, 2) == pytest.approx(np.array([(4, 5), (2, 3)]))  # unseen: the prior
    stats = other.update([make_obs(1, E, mean_reward=0.0), make_obs(2, E)])
    assert stats.mean_reward == 0.0 and stats.extra["tracked"] == 1.0
    assert stats.extra["updates"] == 2.0
    # 0.5·4 + 0.5·2 + 0 = 3, 0.5·5 + 0.5·3 + 4 = 8
    assert _post(other, 1) == pytest.approx(np.array([(3, 8)]))


def test_forgetting_follows_the_student(make_obs) -> None:
    fast, slow = _mopps(decay=0.5), _mopps(decay=1.0)
    for _ in range(30):
        for s in (fast, slow):
            s.update([make_obs(1, E, mean_reward=1.0)])
    # λ = 0.5: α → fixed point of α = 0.5·α + 0.5 + 8, i.e. 17; β stays at the prior
    assert _post(fast, 1) == pytest.approx(np.array([(17, 1)]), abs=1e-6)
    assert _post(slow, 1) == pytest.approx(np.array([(241, 1)]))
    for s in (fast, slow):  # the problem becomes impossible for the student
        for _ in range(2):
            s.update([make_obs(1, E, mean_reward=0.0)])
    (af, bf), (as_, bs) = _post(fast, 1)[0], _post(slow, 1)[0]
    # fast: α 17 → 9 → 5, β 1 → 9 → 13: mean 5/18; slow still believes it is solved
    assert (af, bf) == pytest.approx((5, 13))
    assert af / (af + bf) < 0.3 and as_ / (as_ + bs) > 0.9


def test_thompson_draw_prefers_posteriors_near_the_target(make_obs, make_pool) -> None:
    s = _mopps()
    # 1: observed at 0.5 ten times, Beta ≈ (9, 9) with λ = 0.5; 2: always solved, ≈ (17, 1);
    # 3: never solved, ≈ (1, 17)
    for _ in range(10):
        s.update([make_obs(1, E, mean_reward=0.5), make_obs(2, E, mean_reward=1.0),
                  make_obs(3, E, mean_reward=0.0)])
    pool = make_pool(np.array([1, 2, 3, 4]), np.zeros((4, 0)))  # 4: unseen, Beta(1, 1)
    picks = np.zeros(4)
    closer_than_unseen = 0
    rng = np.random.default_rng(0)
    for _ in range(400):
        z = s.logits(pool)
        p = s.sample_pass_rates(pool.problem_ids)
        assert z == pytest.approx(-100.0 * np.abs(p - 0.5))  # logit = −sharpness·|p̃ − t|
        assert z[0] > z[1] and z[0] > z[2]  # tight at 0.5 beats solved and unsolvable
        closer_than_unseen += z[0] > z[3]
        sel = sample(z, 1, rng, top_p=s.top_p, temperature=s.temperature)
        picks[sel.indices[0]] += 1
        s.update([])  # a new version: a fresh draw, posteriors unchanged
    assert _post(s, 1) == pytest.approx(np.array([(9, 9)]), abs=0.01)
    assert picks[1] + picks[2] <= 4  # the solved and the unsolvable: (almost) never
    # the unseen one (a uniform draw) is nearer the target now and then: exploration
    assert picks[0] / picks.sum() > 0.7 and picks[3] > 0
    assert closer_than_unseen > 280


def test_large_sharpness_approximates_top_b(make_pool) -> None:
    ids = np.arange(64)
    pool = make_pool(ids, np.zeros((64, 0)))
    rng = np.random.default_rng(1)

    def overlap(sharpness: float) -> float:
        s = _mopps(sharpness=sharpness)
        total = 0
        for _ in range(50):
            z = s.logits(pool)
            top = set(np.argsort(-z, kind="stable")[:8].tolist())
            total += len(top & set(sample(z, 8, rng, top_p=1.0).indices.tolist()))
            s.update([])
        return total / (50 * 8)

    assert overlap(100.0) > 0.75  # default: mostly the paper's top-B
    assert overlap(1.0) < 0.4  # soft: close to a uniform 8 of 64


def test_draw_is_deterministic_and_pure(make_obs, make_pool) -> None:
    pool = make_pool(np.arange(30), np.zeros((30, 0)))
    batch = [make_obs(i, E, mean_reward=(i % 5) / 4) for i in range(0, 30, 2)]
    a = build_strategy("mopps", {}, dim=DIM, seed=3)
    b = build_strategy("mopps", {}, dim=DIM, seed=3)
    c = build_strategy("mopps", {}, dim=DIM, seed=4)
    for s in (a, b, c):
        s.update(batch)
    za = a.logits(pool)
    assert np.array_equal(za, a.logits(pool))  # scoring twice does not move the draw
    assert np.array_equal(za, b.logits(pool))  # same seed, same updates: same draw
    assert not np.array_equal(za, c.logits(pool))  # another seed: another draw
    # another pool: its own draw; the next version: a fresh one
    rev = make_pool(np.arange(30)[::-1].copy(), np.zeros((30, 0)))
    assert not np.array_equal(za[::-1], a.logits(rev))
    a.update([])
    assert not np.array_equal(za, a.logits(pool))


def test_state_roundtrip_gives_identical_logits(make_obs, make_pool) -> None:
    rng = np.random.default_rng(0)
    pool = make_pool(np.arange(40), np.zeros((40, 0)))
    a = build_strategy("mopps", {"capacity": 30}, dim=DIM, seed=5)
    for _ in range(4):
        a.update([make_obs(int(rng.integers(0, 60)), E, mean_reward=float(rng.uniform()))
                  for _ in range(16)])
    state = a.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, str)) for v in state.values())
    b = build_strategy("mopps", {"capacity": 30}, dim=DIM, seed=99)  # overwritten
    b.load_state_dict(loads(dumps(state)))
    assert np.array_equal(a.logits(pool), b.logits(pool))
    assert a.active() == b.active() and len(a) == len(b) == 30
    batch = [make_obs(int(i), E, mean_reward=0.5) for i in rng.integers(0, 80, size=16)]
    assert a.update(batch) == b.update(batch)  # same records evicted in the same order
    assert np.array_equal(a.logits(pool), b.logits(pool))
    with pytest.raises(ValueError):
        build_strategy("learnability", {}, dim=DIM, seed=0).load_state_dict(state)
    with pytest.raises(ValueError):
        b.load_state_dict(build_strategy("learnability", {}, dim=DIM, seed=0).state_dict())


def test_bounded_memory_drops_least_recently_observed(make_obs) -> None:
    s = _mopps(capacity=3)
    for pid in (1, 2, 3):
        s.update([make_obs(pid, E, mean_reward=1.0)])
    s.update([make_obs(1, E, mean_reward=1.0)])  # 1 is now the most recent
    s.update([make_obs(4, E, mean_reward=0.0)])  # full: 2, the least recent, goes
    assert len(s) == 3
    assert _is_prior(s, 2)  # reads as the prior again
    assert _post(s, 1, 3, 4) == pytest.approx(np.array([(13, 1), (9, 1), (1, 9)]))
    stats = s.update([make_obs(p, E, mean_reward=0.5) for p in (5, 6, 7, 8)])
    assert stats.extra["tracked"] == 3.0
    assert [p for p in (1, 3, 4, 5, 6, 7, 8) if not _is_prior(s, p)] == [6, 7, 8]
    # a state holding more records than this build's capacity: the newest ones are kept
    small = _mopps(capacity=2)
    small.load_state_dict(s.state_dict())
    assert len(small) == 2 and _is_prior(small, 6)
    assert _post(small, 7, 8) == pytest.approx(np.array([(5, 5), (5, 5)]))


def test_dormant_steps(make_obs) -> None:
    s = _mopps(dormant_steps=2)
    assert not s.active()
    s.update([make_obs(1, E, mean_reward=1.0)])
    assert not s.active()
    s.update([])
    assert s.active()


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"target": 1.5}, "'target'"),
        ({"target": "half"}, "'target'"),
        ({"prior_alpha": 0.0}, "'prior_alpha'"),
        ({"prior_beta": -1.0}, "'prior_beta'"),
        ({"decay": 1.01}, "'decay'"),
        ({"decay": float("inf")}, "'decay'"),
        ({"group_size": 0}, "'group_size'"),
        ({"sharpness": 0.0}, "'sharpness'"),
        ({"sharpness": 1e5}, "'sharpness'"),
        ({"top_p": 0.0}, "'top_p'"),
        ({"dormant_steps": -1}, "'dormant_steps'"),
        ({"dormant_steps": 1.5}, "'dormant_steps'"),
        ({"capacity": 0}, "'capacity'"),
        ({"capacity": True}, "'capacity'"),
        ({"capacity": 1 << 21}, "'capacity'"),
        ({"lambda": 0.5}, "lambda"),
    ],
)
def test_bad_params(params: dict, needle: str) -> None:
    with pytest.raises(StrategyError, match=needle):
        build_strategy("mopps", params, dim=DIM, seed=0)
