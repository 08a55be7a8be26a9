"""Sampler: nucleus + uniform floor, propensities, and that draws follow q."""

import math

import numpy as np
import pytest

from curator.curation.sampler import entropy, sample, softmax


def test_uniform_selection() -> None:
    sel = sample(None, 4, np.random.default_rng(0), pool_size=10)
    assert sel.indices.dtype == np.int64 and len(set(sel.indices.tolist())) == 4
    assert np.allclose(sel.propensities, 0.1)
    assert sel.sources == ["explore"] * 4
    assert np.allclose(sel.pool_probs, 0.1) and sel.pool_probs.shape == (10,)


def test_nucleus_decides_how_many_and_propensity_is_full_pool_q() -> None:
    q = np.array([0.4, 0.3, 0.2, 0.1])
    # cumulative 0.4, 0.7, 0.9, 1.0 -> nucleus of 2 at top_p 0.75: the curator draws 2
    # items (from the whole q, as the reference does), the uniform fill the third
    sel = sample(np.log(q), 3, np.random.default_rng(1), top_p=0.75)
    assert sel.nucleus_size == 2
    assert sel.sources == ["curator", "curator", "explore"]
    # every item, curator or explore, logs its full-pool q(x)
    assert np.allclose(sel.propensities, q[sel.indices])
    assert np.allclose(sel.pool_probs, q)
    assert len(set(sel.indices.tolist())) == 3


def test_curator_draws_come_from_the_whole_pool_not_only_the_nucleus() -> None:
    q = np.array([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(7)
    first = [sample(np.log(q), 2, rng, top_p=0.75).indices[:2] for _ in range(4000)]
    drawn = np.bincount(np.concatenate(first), minlength=4)
    assert drawn[2] > 0 and drawn[3] > 0  # outside the top-2 nucleus, still drawable


def test_peaked_q_gets_exploration_floor() -> None:
    logits = np.zeros(20)
    logits[0] = 10.0  # q[0] ~ 0.999 > top_p: nucleus is still one item
    sel = sample(logits, 5, np.random.default_rng(2), top_p=0.9)
    assert sel.nucleus_size == 1
    assert sel.sources == ["curator"] + ["explore"] * 4
    assert sel.indices[0] == 0 and sel.propensities[0] == pytest.approx(softmax(logits)[0])
    assert np.allclose(sel.propensities[1:], softmax(logits)[1])
    assert len(set(sel.indices.tolist())) == 5


@pytest.mark.parametrize(("explore", "n_explore"), [(0.0, 0), (0.05, 3), (0.1, 5), (1.0, 50)])
def test_explore_share_is_guaranteed(explore: float, n_explore: int) -> None:
    logits = np.random.default_rng(3).normal(size=200)
    sel = sample(logits, 50, np.random.default_rng(4), top_p=1.0, explore=explore)
    assert sel.sources.count("explore") == n_explore
    assert sel.sources == ["curator"] * (50 - n_explore) + ["explore"] * n_explore
    assert len(set(sel.indices.tolist())) == 50
    with pytest.raises(ValueError):
        sample(logits, 50, np.random.default_rng(4), explore=1.5)


def test_top_p_one_is_all_curator() -> None:
    logits = np.random.default_rng(3).normal(size=50)
    sel = sample(logits, 50, np.random.default_rng(4), top_p=1.0)
    assert sel.nucleus_size == 50 and sel.sources == ["curator"] * 50
    assert sorted(sel.indices.tolist()) == list(range(50))


def test_first_draw_follows_q() -> None:
    logits = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    q = softmax(logits)
    rng = np.random.default_rng(5)
    n = 20_000
    counts = np.bincount(
        [sample(logits, 1, rng, top_p=1.0).indices[0] for _ in range(n)], minlength=5
    )
    chi2 = float((((counts - n * q) ** 2) / (n * q)).sum())
    assert chi2 < 18.47  # chi-square, 4 dof, p = 0.001


def test_two_draws_are_without_replacement_by_q() -> None:
    logits = np.array([0.0, 1.0, 2.0, 0.5])
    q = softmax(logits)
    # P(i among 2 sequential draws) = q_i + sum_{j != i} q_j q_i / (1 - q_j)
    incl = np.array(
        [q[i] + sum(q[j] * q[i] / (1 - q[j]) for j in range(4) if j != i) for i in range(4)]
    )
    rng = np.random.default_rng(6)
    n = 10_000
    hits = np.zeros(4)
    for _ in range(n):
        sel = sample(logits, 2, rng, top_p=1.0)
        assert sel.indices[0] != sel.indices[1]
        hits[sel.indices] += 1
    assert np.allclose(hits / n, incl, atol=0.02)


def test_temperature_flattens() -> None:
    logits = np.array([0.0, 2.0])
    hot = sample(logits, 1, np.random.default_rng(0), top_p=1.0, temperature=2.0)
    assert np.allclose(hot.pool_probs, softmax(logits / 2.0))


def test_validation() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        sample(np.zeros(3), 0, rng)
    with pytest.raises(ValueError):
        sample(np.zeros(3), 4, rng)
    with pytest.raises(ValueError):
        sample(None, 2, rng)
    with pytest.raises(ValueError):
        sample(np.array([0.0, np.nan]), 1, rng)
    with pytest.raises(ValueError):
        sample(np.zeros(3), 1, rng, top_p=0.0)
    with pytest.raises(ValueError):
        sample(np.zeros(3), 1, rng, temperature=0.0)


def test_entropy() -> None:
    assert entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
    assert entropy(np.array([1.0, 0.0])) == 0.0
