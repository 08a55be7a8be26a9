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


def test_propensities_nucleus_and_fill() -> None:
    q = np.array([0.4, 0.3, 0.2, 0.1])
    # cumulative 0.4, 0.7, 0.9, 1.0 -> nucleus {0, 1} at top_p 0.75
    sel = sample(np.log(q), 3, np.random.default_rng(1), top_p=0.75)
    assert sel.nucleus_size == 2
    assert sel.sources == ["curator", "curator", "explore"]
    assert sorted(sel.indices[:2].tolist()) == [0, 1]
    props = dict(zip(sel.indices[:2].tolist(), sel.propensities[:2].tolist(), strict=True))
    assert props[0] == pytest.approx(4 / 7) and props[1] == pytest.approx(3 / 7)
    assert sel.indices[2] in (2, 3)
    assert sel.propensities[2] == pytest.approx(1 / 2)  # 2 candidates open to the fill
    assert np.allclose(sel.pool_probs, q)


def test_peaked_q_gets_exploration_floor() -> None:
    logits = np.zeros(20)
    logits[0] = 10.0  # q[0] ~ 0.999 > top_p: nucleus is still one item
    sel = sample(logits, 5, np.random.default_rng(2), top_p=0.9)
    assert sel.nucleus_size == 1
    assert sel.sources == ["curator"] + ["explore"] * 4
    assert sel.indices[0] == 0 and sel.propensities[0] == pytest.approx(1.0)
    assert np.allclose(sel.propensities[1:], 1 / 19)
    assert len(set(sel.indices.tolist())) == 5


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
