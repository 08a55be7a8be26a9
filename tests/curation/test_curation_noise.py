"""What keeps coin flips from winning: the prior's shape, the progress credit, and the
declared metadata field as an input (actor_curator and pcl)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.curation.checkpoint import dumps, loads
from curator.curation.stats import (
    CATEGORY_FEATURE_NAMES,
    MAX_CATEGORIES,
    N_CATEGORY_FEATURES,
    CategoryStats,
)
from curator.curation.strategies import build_strategy
from curator.curation.strategies.base import StrategyError
from curator.curation.strategies.torchstate import arrays_to_tensors, tensors_to_arrays
from curator.curation.types import Observation, Pool

DIM = 8


def _obs(pid: int, reward: float, u: float, category: str | None = None,
         emb: np.ndarray | None = None, kind: str = "ratio") -> Observation:
    signal = 0.0 if reward in (0.0, 1.0) else 1.0
    return Observation(problem_id=pid, logit=0.0, propensity=0.0, source="curator",
                       embedding=np.ones(DIM, np.float32) / math.sqrt(DIM) if emb is None
                       else emb, category=category, utility=u,
                       utility_kind=kind,  # type: ignore[arg-type]
                       mean_reward=reward, mean_abs_advantage=signal)


# -- the prior's shape -------------------------------------------------------------------

def test_signal_prior_is_flat_across_the_middle_and_falls_where_groups_agree() -> None:
    s = build_strategy("actor_curator", {}, dim=DIM, seed=0)  # the default shape, G = 8
    p = np.array([[0.5], [0.3], [0.2], [0.05], [0.0]], dtype=np.float32)
    term = s._prior_term(p)[:, 0]
    want = [math.log(1 - x**8 - (1 - x) ** 8 + 1e-3) for x in p[:, 0].tolist()]
    assert term.tolist() == pytest.approx(want, rel=1e-5)
    # a coin flip (0.5) gains almost nothing over a problem at 0.3: no peak to sit on
    assert term[0] - term[1] < 0.06
    assert term[3] < term[2] - 0.8 and term[4] == pytest.approx(math.log(1e-3))
    peak = build_strategy("actor_curator", {"prior_shape": "peak"}, dim=DIM,
                          seed=0)._prior_term(p)[:, 0]
    assert peak[0] - peak[1] > 0.08  # the peaked prior prefers 0.5 to 0.3 (×15 in the logit)
    with pytest.raises(StrategyError, match="group_size"):
        build_strategy("actor_curator", {"group_size": 1}, dim=DIM, seed=0)


# -- the progress credit -----------------------------------------------------------------

def test_progress_credit_keeps_a_first_visit_and_credits_revisits_by_the_trend() -> None:
    s = build_strategy("actor_curator", {}, dim=DIM, seed=0)  # credit "progress"
    first = [_obs(0, 0.25, 0.02), _obs(1, 0.5, 0.02)]
    assert [s._credit(o) for o in first] == [0.02, 0.02]  # no history: Û as sent
    s.update(first)
    # learning: 0.25 → 0.5 (+0.25: trend +1); coin flip: 0.5 → 0.5 (trend 0)
    assert s._credit(_obs(0, 0.5, 0.02)) == pytest.approx(0.02)
    assert s._credit(_obs(1, 0.5, 0.02)) == pytest.approx(0.0)
    # falling pass rate: negative credit of |Û| however Û's sign came out
    assert s._credit(_obs(1, 0.375, -0.01)) == pytest.approx(-0.01 * 0.5)
    raw = build_strategy("actor_curator", {"credit": "raw"}, dim=DIM, seed=0)
    raw.update(first)
    assert raw._credit(_obs(1, 0.5, 0.02)) == 0.02  # the paper's Û, as is


# -- the declared metadata field ---------------------------------------------------------

def test_category_stats_by_hand() -> None:
    cs = CategoryStats(half_life=1.0)  # decay 0.5 per push
    cs.push([_obs(0, 0.75, 0.2, "3"), _obs(1, 1.0, 0.0, "3"), _obs(2, 0.5, 0.4, "algebra")],
            np.array([0.2, 0.0, 0.4]))
    cs.push([_obs(3, 0.25, 0.1, "algebra")], np.array([0.1]))
    f = cs.features(["3", "algebra", "unseen", None], 4)
    assert f.shape == (4, N_CATEGORY_FEATURES) and len(CATEGORY_FEATURE_NAMES) == 6
    # "3": decayed once: 0.5·(2 groups, rewards 1.75, 1 no-signal, utility 0.2)
    assert f[0, 0] == pytest.approx((0.875 + 1.0) / (1.0 + 2.0))
    assert f[0, 1] == pytest.approx((0.5 + 1.0) / (1.0 + 2.0))
    norm = 0.5 * (0.2 + 0.0 + 0.4) / 3 + 0.5 * 0.1  # the decayed mean |utility|
    assert f[0, 2] == pytest.approx(0.1 / 1.0 / norm, rel=1e-5)
    assert f[0, 3] == pytest.approx(math.log1p(1.0) / math.log1p(100.0))
    assert (f[0, 4], f[0, 5]) == (pytest.approx(1.0), 1.0)  # 3 / the largest number seen
    # "algebra": 0.5·(1 group, 0.5) + (1 group, 0.25)
    assert f[1, 0] == pytest.approx((0.25 + 0.25 + 1.0) / (1.5 + 2.0))
    assert (f[1, 4], f[1, 5]) == (0.0, 0.0)  # not a number
    assert f[2].tolist() == pytest.approx([0.5, 0.5, 0, 0, 0, 0])  # unseen: the priors
    assert f[3].tolist() == pytest.approx([0.5, 0.5, 0, 0, 0, 0])
    back = CategoryStats()
    back.load_state_dict(tensors_to_arrays(loads(dumps(arrays_to_tensors(cs.state_dict())))))
    np.testing.assert_array_equal(back.features(["3", "algebra"], 2), f[:2])


def test_category_stats_stay_bounded() -> None:
    cs = CategoryStats()
    cs.push([_obs(i, 0.5, 0.0, f"v{i}") for i in range(MAX_CATEGORIES + 50)],
            np.zeros(MAX_CATEGORIES + 50))
    assert len(cs.keys) == MAX_CATEGORIES and cs.sums.shape == (MAX_CATEGORIES, 5)
    assert np.isclose(cs.sums[:, 0].sum(), MAX_CATEGORIES + 50)  # overflow shares slots


@pytest.mark.parametrize("strategy", ["actor_curator", "pcl"])
def test_field_is_an_input_that_moves_the_scores(strategy: str) -> None:
    """Two labels on identical embeddings: only the field can tell them apart."""
    params = {"field": "level", "dormant_steps": 0} if strategy == "actor_curator" else {
        "field": "level"}
    s = build_strategy(strategy, params, dim=DIM, seed=3)
    assert s.category_field == "level"
    emb = np.ones(DIM, np.float32) / math.sqrt(DIM)
    for step in range(30):  # the frontier label is being learned (its pass rate rises)
        rising = 0.2 + 0.02 * step
        s.update([_obs(10 * step + j, rising if j % 2 else 1.0, 0.05 if j % 2 else 0.0,
                       "easy" if j % 2 == 0 else "frontier", emb) for j in range(16)])
    pool = Pool(np.array([1000, 1001]), np.stack([emb, emb]), ["easy", "frontier"])
    z = s.logits(pool)
    assert z[1] > z[0] + 0.5, z  # the frontier label (signal, utility) scores higher
    blind = build_strategy(strategy, {} if strategy == "pcl" else {"dormant_steps": 0},
                           dim=DIM, seed=3)
    assert blind.category_field is None
    copy = build_strategy(strategy, params, dim=DIM, seed=99)
    copy.load_state_dict(loads(dumps(s.state_dict())))
    np.testing.assert_array_equal(copy.logits(pool), z)
    with pytest.raises(ValueError, match="field|inputs"):
        blind.load_state_dict(loads(dumps(s.state_dict())))
