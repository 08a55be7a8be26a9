"""What makes actor_curator hold up: the ratio at τ, the batch normalisation, the trust
region, the clip binding, run statistics, region credit, and complete state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curator.curation.checkpoint import dumps, loads
from curator.curation.osmd import batch_kl, batch_ratio, osmd_loss
from curator.curation.stats import FEATURE_NAMES, N_FEATURES, RunStats
from curator.curation.strategies import build_strategy
from curator.curation.types import Observation, Pool

DIM = 8


def _obs(pid: int, emb: np.ndarray, logit: float, u: float | None, reward: float | None = None,
         source: str = "curator") -> Observation:
    signal = None if reward is None else (0.0 if reward in (0.0, 1.0) else 1.0)
    return Observation(problem_id=pid, logit=logit, propensity=0.0, source=source,  # type: ignore[arg-type]
                       embedding=emb, category=None, utility=u, utility_kind="ratio",
                       mean_reward=reward, mean_abs_advantage=signal)


# -- the ratio and the loss -------------------------------------------------------------

def test_ratio_is_taken_at_the_samplers_temperature() -> None:
    z_old = torch.tensor([0.0, 1.0, 2.0])
    z_new = torch.tensor([0.5, 1.0, 1.0])
    tau = 2.0

    def sm(z: list[float]) -> list[float]:
        e = [math.exp(v / tau) for v in z]
        return [v / sum(e) for v in e]

    want = [a / b for a, b in zip(sm([0.5, 1.0, 1.0]), sm([0.0, 1.0, 2.0]))]
    got = batch_ratio(z_new, z_old, tau, "softmax")
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    # at τ = 1 the same logits give a different ratio: τ is not ignored
    assert not np.allclose(batch_ratio(z_new, z_old, 1.0, "softmax").numpy(), want)
    # the loss uses it: U = (1, 0, 0), ρ = 0.9 so nothing clips
    loss = osmd_loss(z_new, z_old, torch.tensor([1.0, 0.0, 0.0]), 0.9, tau, "softmax")
    assert float(loss) == pytest.approx(-want[0] / 3, rel=1e-6)


def test_sampled_ratio_is_self_normalised_importance_weight() -> None:
    z_old = torch.tensor([2.0, 0.0, -1.0, 0.5])
    z_new = torch.tensor([1.0, 0.5, -1.0, 0.0])
    w = [math.exp(a - b) for a, b in zip(z_new.tolist(), z_old.tolist())]
    want = [x / (sum(w) / 4) for x in w]
    r = batch_ratio(z_new, z_old, 1.0, "sampled")
    assert r.tolist() == pytest.approx(want, rel=1e-6)
    assert float(r.mean()) == pytest.approx(1.0)
    assert float(batch_kl(z_old, z_new, 1.0, "sampled")) == pytest.approx(
        -sum(math.log(x) for x in want) / 4, rel=1e-6)
    assert float(batch_kl(z_old, z_old.clone(), 1.0, "sampled")) == pytest.approx(0.0, abs=1e-7)


def test_batch_softmax_pushes_favoured_items_down_even_when_all_teach_equally() -> None:
    """Why "sampled" is the default: with equal utilities the softmax-renormalised
    ratio still has a gradient that lowers the behaviour distribution's favourites."""
    z_old = torch.tensor([3.0, 0.0, 0.0, 0.0])
    u = torch.ones(4)
    grads = {}
    for mode in ("softmax", "sampled"):
        z = z_old.clone().requires_grad_(True)
        osmd_loss(z, z_old, u, 0.2, 1.0, mode).backward()
        grads[mode] = z.grad.clone()
    # descending the loss moves z by −grad: the favourite goes down under "softmax"
    assert grads["softmax"][0] > 1e-3
    assert torch.allclose(grads["sampled"], torch.zeros(4), atol=1e-6)


# -- the update: clip, trust region, diagnostics ---------------------------------------------

def _clusters(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    centres = rng.normal(size=(2, DIM))
    emb = centres[labels] + 0.3 * rng.normal(size=(n, DIM))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), labels


def _run(params: dict, updates: int = 15) -> tuple[object, list[dict[str, float]]]:
    emb, labels = _clusters()
    s = build_strategy("actor_curator", {"dormant_steps": 0} | params, dim=DIM, seed=0)
    rng = np.random.default_rng(1)
    extras = []
    for _ in range(updates):
        ids = rng.choice(len(emb), 64, replace=False)
        z = s.logits(Pool(problem_ids=ids, embeddings=emb[ids]))
        batch = [_obs(int(i), emb[i], float(z[j]), 2e-3 if labels[i] else 1e-4)
                 for j, i in enumerate(ids)]
        extras.append(s.update(batch).extra)
    return s, extras


def test_default_update_is_ppo_like_and_the_clip_binds() -> None:
    _, extras = _run({})
    for key in ("clip_fraction", "ratio_dev", "kl", "opt_steps", "logit_std", "explore_share"):
        assert all(key in e for e in extras)
    assert max(e["opt_steps"] for e in extras) > 1  # several minibatch steps per update
    assert max(e["clip_fraction"] for e in extras) > 0  # the clip is not decorative


def test_trust_region_bounds_each_step() -> None:
    _, loose = _run({"max_kl": 0, "lr": 0.02})
    _, tight = _run({"max_kl": 1e-3, "lr": 0.02})
    assert max(e["kl"] for e in loose) > 0.01
    assert sum(e["opt_steps"] for e in tight) < sum(e["opt_steps"] for e in loose)
    # one Adam step may overshoot, but the epochs stop there
    assert float(np.median([e["kl"] for e in tight])) < 0.01


# -- statistics -----------------------------------------------------------------------------

def test_run_stats_features_follow_pass_rates_and_survive_a_round_trip() -> None:
    emb, labels = _clusters(200)
    stats = RunStats(DIM, n_regions=8, half_life=5.0)
    f0 = stats.features(np.arange(4), emb[:4])
    assert f0.shape == (4, N_FEATURES) and len(FEATURE_NAMES) == N_FEATURES
    # cluster 1 always solved (no signal), cluster 0 half solved
    batch = [_obs(i, emb[i], 0.0, 0.0 if labels[i] else 1e-3,
                  reward=1.0 if labels[i] else 0.5) for i in range(64)]
    stats.push(batch)
    f = stats.features(np.arange(64, 200), emb[64:200])
    lab = labels[64:200]
    pass_rate, no_signal = f[:, 0], f[:, 1]
    assert pass_rate[lab == 1].mean() > pass_rate[lab == 0].mean() + 0.2
    assert no_signal[lab == 1].mean() > no_signal[lab == 0].mean() + 0.2
    seen = stats.features(np.arange(3), emb[:3])
    assert (seen[:, FEATURE_NAMES.index("seen")] == 1.0).all()
    other = RunStats(DIM, n_regions=8, half_life=5.0)
    other.load_state_dict(stats.state_dict())
    np.testing.assert_array_equal(other.features(np.arange(200), emb), stats.features(
        np.arange(200), emb))


def test_region_credit_divides_by_the_crowd() -> None:
    emb, _ = _clusters(64)
    s = build_strategy("actor_curator", {"regions": 4}, dim=DIM, seed=0)
    assert (s._region_credit(list(emb[:8])) == 1.0).all()  # no regions yet
    s.update([_obs(i, emb[i], 0.0, 1e-3, reward=0.5) for i in range(64)])
    reg = s._stats.regions(emb[:12])
    w = s._region_credit(list(emb[:12]))
    counts = np.bincount(reg)[reg]
    np.testing.assert_allclose(w, (12 / 4) / counts)


def test_state_round_trip_through_a_checkpoint_reproduces_selection() -> None:
    s, _ = _run({}, updates=6)
    emb, _ = _clusters()
    # rewards too, so the pass-rate head and the statistics have something to hold
    s.update([_obs(i, emb[i], 0.0, 1e-3, reward=0.25) for i in range(64)])
    state = loads(dumps(s.state_dict()))  # what the service stores and reloads
    t = build_strategy("actor_curator", {"dormant_steps": 0}, dim=DIM, seed=99)
    t.load_state_dict(state)
    pool = Pool(problem_ids=np.arange(100, 300), embeddings=emb[100:300])
    np.testing.assert_array_equal(s.logits(pool), t.logits(pool))
    assert s.explore_share == t.explore_share
    wrong = build_strategy("actor_curator", {"stats": False}, dim=DIM, seed=0)
    with pytest.raises(ValueError, match="inputs"):
        wrong.load_state_dict(state)


def test_pcl_can_read_the_same_statistics() -> None:
    """Equal information: pcl's value head may take the run statistics actor_curator
    reads; its state (head + statistics) round-trips."""
    emb, labels = _clusters(200)
    s = build_strategy("pcl", {"stats": True}, dim=DIM, seed=0)
    batch = [_obs(i, emb[i], 0.0, None, reward=1.0 if labels[i] else 0.5) for i in range(64)]
    s.update(batch)
    pool = Pool(problem_ids=np.arange(64, 200), embeddings=emb[64:200])
    t = build_strategy("pcl", {"stats": True}, dim=DIM, seed=1)
    t.load_state_dict(loads(dumps(s.state_dict())))
    np.testing.assert_array_equal(s.logits(pool), t.logits(pool))
    with pytest.raises(ValueError):
        build_strategy("pcl", {}, dim=DIM, seed=0).load_state_dict(s.state_dict())


def test_rewards_only_utility_credits_pass_rate_progress_not_coin_flips() -> None:
    """Without log-ratios the service sends mean |A|, which is largest for coin flips;
    the curator credits it by how the problem's pass rate moved since its last visit."""
    emb, _ = _clusters(8)

    def fallback_obs(pid: int, reward: float, abs_adv: float) -> Observation:
        return Observation(problem_id=pid, logit=0.0, propensity=0.0, source="curator",
                           embedding=emb[pid], category=None, utility=abs_adv,
                           utility_kind="abs_advantage", mean_reward=reward,
                           mean_abs_advantage=abs_adv)

    s = build_strategy("actor_curator", {}, dim=DIM, seed=0)
    first = [fallback_obs(0, 0.25, 0.8), fallback_obs(1, 0.5, 1.0)]
    assert [s._credit(o) for o in first] == [0.0, 0.0]  # no history: no trend
    s.update(first)
    learning, coin = fallback_obs(0, 0.75, 0.8), fallback_obs(1, 0.5, 1.0)
    assert s._credit(learning) == pytest.approx(0.8 * 1.0)  # +0.5, clipped to +1
    assert s._credit(coin) == pytest.approx(0.0)
    assert s._credit(fallback_obs(0, 0.0, 0.5)) == pytest.approx(-0.5)  # forgotten
    old = build_strategy("actor_curator", {"fallback": "abs_advantage"}, dim=DIM, seed=0)
    assert old._credit(coin) == 1.0


def test_rewards_only_statistics_hold_the_credited_utility_not_mean_abs_advantage() -> None:
    """The run statistics the learned part reads must carry the utility it is trained on:
    a coin flip revisited at the same pass rate has mean |A| ≈ 1 every visit but no
    credit, so its `problem_utility` stays 0 while a problem being learned gains."""
    emb, _ = _clusters(8)
    col = FEATURE_NAMES.index("problem_utility")

    def obs(pid: int, reward: float) -> Observation:
        return Observation(problem_id=pid, logit=0.0, propensity=0.0, source="curator",
                           embedding=emb[pid], category=None, utility=0.9,
                           utility_kind="abs_advantage", mean_reward=reward,
                           mean_abs_advantage=0.9)

    s = build_strategy("actor_curator", {}, dim=DIM, seed=0)
    rewards = [0.25, 0.5, 0.75]  # problem 0 is learned; problem 1 stays a coin flip
    for r in rewards:
        s.update([obs(0, r), obs(1, 0.5), obs(2, 0.5), obs(3, 0.5)])
    feats = s._stats.features(np.array([0, 1]), emb[[0, 1]])
    assert feats[1, col] == pytest.approx(0.0, abs=1e-9)
    assert feats[0, col] > 0.5


def test_run_statistics_stay_bounded_and_forget_the_least_recently_seen() -> None:
    """Per-problem records live in `capacity` slots: a long run over a large bank keeps
    a bounded state (and checkpoint); the problem seen longest ago gives up its slot,
    and a round trip through state_dict keeps every record and the eviction order."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((64, DIM)).astype(np.float32)

    def batch(ids: list[int], reward: float) -> list[Observation]:
        return [_obs(i, emb[i], 0.0, 0.1, reward) for i in ids]

    stats = RunStats(DIM, n_regions=4, capacity=8)
    stats.push(batch([0, 1, 2, 3], 0.25))
    stats.push(batch([4, 5, 6, 7], 0.5))
    stats.push(batch([0, 1], 0.75))  # 0 and 1 are now the most recently seen
    assert len(stats) == 8
    copy_ = RunStats(DIM, n_regions=4)
    copy_.load_state_dict(stats.state_dict())
    for s in (stats, copy_):
        s.push(batch([10, 11, 12], 1.0))  # evicts 2, 3 (update 0) and one of 4..7
        assert len(s) == 8 and s.capacity == 8
        assert s.record(2) is None and s.record(3) is None
        assert s.record(0) is not None and s.record(1) is not None
        assert sum(s.record(i) is None for i in (4, 5, 6, 7)) == 1
        assert s.record(10)[0] == pytest.approx(1.0)  # a fresh record, not a reused one
        assert s.record(0)[0] == pytest.approx(0.25 + 0.5 * (0.75 - 0.25))
    np.testing.assert_array_equal(stats.state_dict()["problem_values"],
                                  copy_.state_dict()["problem_values"])
    assert stats.state_dict()["problem_ids"].shape == (8,)
    # an evicted problem reads as unseen again
    feats = stats.features(np.array([2, 0]), emb[[2, 0]])
    assert feats[0, FEATURE_NAMES.index("seen")] == 0.0
    assert feats[1, FEATURE_NAMES.index("seen")] == 1.0


def test_selection_copy_selects_as_the_original_and_is_independent_of_it() -> None:
    emb, _ = _clusters(64)
    s = build_strategy("actor_curator", {"dormant_steps": 1}, dim=DIM, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ids = rng.choice(64, 16, replace=False)
        s.update([_obs(int(i), emb[i], 0.0, float(rng.normal()) * 0.01, float(rng.random()))
                  for i in ids])
    pool = Pool(problem_ids=np.arange(64), embeddings=emb[:64], categories=None)
    copy = s.selection_copy()
    np.testing.assert_array_equal(copy.logits(pool), s.logits(pool))
    assert (copy.active(), copy.explore_share) == (s.active(), s.explore_share)
    before = copy.logits(pool)
    s.update([_obs(i, emb[i], 0.0, 0.5, 0.5) for i in range(16)])  # the original trains on
    assert not np.array_equal(s.logits(pool), before)
    np.testing.assert_array_equal(copy.logits(pool), before)
