"""Utility Û, GRPO advantages, the per-problem window and scaling, by hand."""

import math

import numpy as np
import pytest

from curator.curation.utility import (
    UtilityWindow,
    group_stats,
    grpo_advantages,
    realised_improvement,
    scale,
)

A = 0.5 / (0.5 + 1e-6)  # rewards [1,0,0,1]: mean 0.5, population std 0.5


def test_grpo_advantages() -> None:
    assert np.allclose(grpo_advantages([1, 0, 0, 1]), [A, -A, -A, A], rtol=0, atol=1e-12)
    assert np.allclose(grpo_advantages([1, 1, 1, 1]), 0.0)
    assert np.allclose(grpo_advantages([0.3]), 0.0)
    with pytest.raises(ValueError):
        grpo_advantages([])
    with pytest.raises(ValueError):
        grpo_advantages([1.0, math.nan])


def test_realised_improvement_with_ratios() -> None:
    # s = exp([0.1, -0.2, 0, 0.05])
    #   = [1.1051709180756477, 0.8187307530779818, 1, 1.0512710963760241]
    expected = A * (1.1051709180756477 - 0.8187307530779818 - 1.0 + 1.0512710963760241) / 4
    u, kind = realised_improvement([1, 0, 0, 1], [0.1, -0.2, 0.0, 0.05])
    assert kind == "ratio"
    assert u == pytest.approx(expected, abs=1e-12)
    assert u == pytest.approx(0.0844276, abs=1e-6)


def test_realised_improvement_fallback_and_stats() -> None:
    u, kind = realised_improvement([1, 0, 0, 1])
    assert kind == "abs_advantage" and u == pytest.approx(A)
    assert group_stats([1, 0, 0, 1]) == pytest.approx((0.5, A))
    assert group_stats([0, 0, 0]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        realised_improvement([1, 0], [0.1])


def test_window() -> None:
    w = UtilityWindow(horizon=2)
    assert [w.push(7, v) for v in (1.0, 2.0, 3.0)] == [1.0, 1.5, 2.5]
    assert w.push(8, -1.0) == -1.0
    state = w.state_dict()
    assert state == {"horizon": 2, "ids": [7, 8], "lengths": [2, 1], "values": [2.0, 3.0, -1.0]}
    w2 = UtilityWindow(horizon=5)
    w2.load_state_dict(state)
    assert w2.push(7, 5.0) == 4.0 and w2.mean(8) == -1.0 and w2.mean(9) is None


def test_scale() -> None:
    assert np.allclose(scale(np.array([1e-3, -2e-3])), [1.0, -2.0])
    assert np.allclose(scale(np.array([1e-3]), "amplify", 10.0), [1e-2])
    std = math.sqrt(2 / 3)
    assert np.allclose(scale(np.array([1.0, 2.0, 3.0]), "standardize"), [-1 / std, 0, 1 / std])
    assert np.allclose(scale(np.array([5.0]), "standardize"), [0.0])
    with pytest.raises(ValueError):
        scale(np.array([1.0]), "bogus")  # type: ignore[arg-type]


def test_summarise_group_matches_the_numpy_definitions():
    import numpy as np

    from curator.curation.utility import group_stats, realised_improvement, summarise_group

    rng = np.random.default_rng(3)
    for g in (1, 2, 8, 16):
        rewards = rng.integers(0, 2, g).astype(float).tolist()
        log_ratios = rng.normal(0, 0.1, g).tolist()
        u, kind, mean, mean_abs = summarise_group(rewards, log_ratios)
        assert (u, kind) == pytest.approx(realised_improvement(rewards, log_ratios))
        assert (mean, mean_abs) == pytest.approx(group_stats(rewards))
        u0, kind0, _, _ = summarise_group(rewards)
        assert kind0 == "abs_advantage"
        assert u0 == pytest.approx(realised_improvement(rewards)[0])
    # the worked example: rewards [1, 0, 0, 1], log-ratios [0.1, -0.2, 0, 0.05]
    u, _, _, _ = summarise_group([1, 0, 0, 1], [0.1, -0.2, 0.0, 0.05])
    a = 0.5 / (0.5 + 1e-6)  # (r - mean) / (std + eps) with mean = std = 0.5
    expected = (a * np.exp(0.1) - a * np.exp(-0.2) - a * np.exp(0.0) + a * np.exp(0.05)) / 4
    assert u == pytest.approx(expected)


def test_utility_window_forgets_the_least_recently_pushed_problem_beyond_its_bound() -> None:
    from curator.curation.utility import UtilityWindow

    w = UtilityWindow(horizon=2, max_problems=3)
    for pid, u in [(1, 1.0), (2, 2.0), (3, 3.0), (1, 5.0)]:  # 1 pushed again: 2 is oldest
        w.push(pid, u)
    assert w.push(4, 4.0) == 4.0
    assert len(w) == 3 and w.mean(2) is None
    assert w.mean(1) == 3.0 and w.mean(3) == 3.0
    copy = UtilityWindow(horizon=2, max_problems=3)
    copy.load_state_dict(w.state_dict())
    for win in (w, copy):  # the order survives a round trip: 3 is now the oldest
        win.push(5, 0.0)
        assert win.mean(3) is None and win.mean(1) == 3.0
