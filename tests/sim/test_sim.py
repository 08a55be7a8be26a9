"""Simulator: student mechanics, log-ratios, bank, report, and one real comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.sim.bank import HARD, NORMAL, TRAP, BankConfig, make_bank
from curator.sim.cli import parse_params, parse_student
from curator.sim.report import _median_steps, steps_to, summarise
from curator.sim.student import (
    Student,
    StudentConfig,
    group_gradient,
    outcome_log_ratios,
    realised_improvement,
    sigmoid,
    similarity_matrix,
)


@pytest.fixture(scope="module")
def bank():
    return make_bank(BankConfig(n_problems=4000, n_heldout=1000), seed=3)


def quiet_student(bank, **kw) -> Student:
    cfg = StudentConfig(logratio_noise=0.0, **kw)
    return Student(cfg, bank.config.n_skills, len(bank.train), seed=1)


# -- student -----------------------------------------------------------------------------

def test_solve_probability_is_sigmoid_of_ability_minus_difficulty(bank):
    st = quiet_student(bank)
    st.ability = np.linspace(-2.0, 3.0, bank.config.n_skills)
    t = bank.train
    idx = np.flatnonzero(t.kind != TRAP)[:200]
    want = 1.0 / (1.0 + np.exp(-(st.ability[t.skill[idx]] - t.difficulty[idx])))
    np.testing.assert_allclose(st.train_prob(t, idx), want, rtol=1e-12)
    trap = np.flatnonzero(t.kind == TRAP)[:50]
    np.testing.assert_array_equal(st.train_prob(t, trap), 0.5)
    hard = np.flatnonzero(t.kind == HARD)
    assert st.train_prob(t, hard).max() < 1e-3  # far beyond reach


def test_heldout_accuracy_is_mean_solve_probability(bank):
    st = quiet_student(bank)
    h = bank.heldout
    assert not (h.kind == TRAP).any()
    want = sigmoid(st.ability[h.skill] - h.difficulty).mean()
    assert st.accuracy(h) == pytest.approx(want)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_no_learning_when_all_rewards_are_equal(bank, value):
    st = quiet_student(bank)
    t = bank.train
    idx = np.arange(64)
    before, memo = st.ability.copy(), st.memo.copy()
    out = st.step(t, idx, np.full((64, 8), value), np.random.default_rng(0))
    np.testing.assert_array_equal(st.ability, before)
    np.testing.assert_array_equal(st.memo, memo)
    np.testing.assert_array_equal(out.log_ratios, 0.0)
    np.testing.assert_array_equal(out.grad, 0.0)


def test_trap_rewards_do_not_depend_on_ability(bank):
    t = bank.train
    trap = np.flatnonzero(t.kind == TRAP)
    rng = np.random.default_rng(0)
    for ability in (-10.0, 0.0, 10.0):
        st = quiet_student(bank)
        st.ability[:] = ability
        r = st.rollouts(t, trap, 64, rng)
        assert abs(r.mean() - 0.5) < 0.02


def test_learning_from_signal_raises_the_skill_and_transfers_to_neighbours(bank):
    st = quiet_student(bank, skill_lr_spread=0.0)
    t = bank.train
    idx = np.flatnonzero((t.kind == NORMAL) & (t.skill == 2))[:16]
    rewards = np.tile([1.0, 0, 1, 0, 0, 0, 1, 0], (16, 1))
    before = st.ability.copy()
    out = st.step(t, idx, rewards, np.random.default_rng(0))
    gain = st.ability - before
    assert gain[2] > gain[1] > 0 and gain[1] == pytest.approx(gain[3])
    assert gain[1] == pytest.approx(0.3 * gain[2])  # ring neighbour, transfer 0.3
    assert (out.p_new > out.p_old).all()
    u = realised_improvement(rewards, out.log_ratios)
    assert (u > 0).all()


def test_traps_memorise_noise_and_hurt_their_skill(bank):
    t = bank.train
    st = quiet_student(bank, skill_lr_spread=0.0)
    trap = np.flatnonzero((t.kind == TRAP) & (t.skill == 5))[:16]
    rewards = np.tile([1.0, 0, 0, 1, 0, 1, 1, 0], (16, 1))
    before = st.ability.copy()
    out = st.step(t, trap, rewards, np.random.default_rng(0))
    assert st.ability[5] < before[5] and st.ability[4] < before[4]  # negative interference
    assert np.all(out.p_new == 0.5)
    u_trap = realised_improvement(rewards, out.log_ratios)
    assert (u_trap > 0).all()  # the student does move toward its sampled answers...

    st2 = quiet_student(bank, skill_lr_spread=0.0)
    normal = np.flatnonzero((t.kind == NORMAL) & (t.skill == 5))[:16]
    out2 = st2.step(t, normal, rewards, np.random.default_rng(0))
    u_normal = realised_improvement(rewards, out2.log_ratios)
    assert u_trap.mean() < 0.6 * u_normal.mean()  # ...but improves far less than learning


def test_group_gradient_is_the_reward_std():
    r = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0], [1.0, 1, 1, 1, 0, 0, 0, 0], [1.0] * 8])
    g = group_gradient(r)
    np.testing.assert_allclose(g, r.std(axis=1), atol=1e-5)
    assert g[1] > g[0] > g[2] == 0.0


def test_outcome_log_ratios_by_hand():
    rewards = np.array([[1.0, 0.0]])
    s = outcome_log_ratios(rewards, np.array([0.0]), np.array([math.log(3.0)]))
    # p: 0.5 → 0.75; solved: log(0.75/0.5), failed: log(0.25/0.5)
    np.testing.assert_allclose(s, [[math.log(1.5), math.log(0.5)]], rtol=1e-12)
    # stable far in the tails, where p rounds to 0 or 1
    s = outcome_log_ratios(np.array([[1.0, 0.0]]), np.array([-40.0]), np.array([-39.0]))
    np.testing.assert_allclose(s[0, 0], 1.0, rtol=1e-9)
    assert abs(s[0, 1]) < 1e-15


def test_similarity_matrix_is_a_symmetric_ring():
    s = similarity_matrix(8, 0.3)
    np.testing.assert_allclose(s, s.T)
    assert s[0, 0] == 1.0 and s[0, 1] == pytest.approx(0.3) and s[0, 7] == pytest.approx(0.3)
    assert s[0, 4] == pytest.approx(0.3**4)


# -- bank --------------------------------------------------------------------------------

def test_bank_shape_shares_and_metadata(bank):
    t = bank.train
    assert len(t) == 4000 and t.features.shape == (4000, 64)
    np.testing.assert_allclose(np.linalg.norm(t.features, axis=1), 1.0, rtol=1e-5)
    assert (t.kind == TRAP).mean() == pytest.approx(0.10, abs=0.002)
    assert (t.kind == HARD).mean() == pytest.approx(0.10, abs=0.002)
    assert set(np.unique(t.bucket)) == {1, 2, 3, 4, 5}
    p = next(iter(bank.problems()))
    assert set(p["metadata"]) == {"skill", "difficulty", "kind"}
    assert len(p["embedding"]) == 64
    again = make_bank(BankConfig(n_problems=4000, n_heldout=1000), seed=3)
    np.testing.assert_array_equal(again.train.features, t.features)


def test_traps_look_like_ordinary_problems_of_their_skill(bank):
    """Features and difficulty labels of traps come from the normal problems' law: a
    linear probe on the features cannot tell them apart better than chance."""
    t = bank.train
    keep = t.kind != HARD
    x, y = t.features[keep].astype(np.float64), (t.kind[keep] == TRAP).astype(np.float64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, te = order[: len(y) // 2], order[len(y) // 2:]
    xb = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(xb[tr], y[tr] - y[tr].mean(), rcond=None)[0]
    score = xb[te] @ w
    pos, neg = score[y[te] == 1], score[y[te] == 0]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert 0.4 < auc < 0.6
    b_trap = np.bincount(t.bucket[t.kind == TRAP], minlength=6)[1:] / (t.kind == TRAP).sum()
    b_norm = np.bincount(t.bucket[t.kind == NORMAL], minlength=6)[1:] / (t.kind == NORMAL).sum()
    np.testing.assert_allclose(b_trap, b_norm, atol=0.06)


# -- report and cli helpers --------------------------------------------------------------

def test_steps_to_target_and_median():
    assert steps_to([0, 1, 2, 3], [0.1, 0.2, 0.5, 0.4], 0.45) == 2
    assert steps_to([0, 1], [0.1, 0.2], 0.9) is None
    assert _median_steps([10, 20, None]) == 20
    assert _median_steps([10, None, None]) is None
    assert _median_steps([10, 20]) == 15


def test_summary_uses_uniform_same_seed_as_default_target():
    def run(strategy, seed, acc):
        n = len(acc) - 1
        return {"strategy": strategy, "seed": seed, "eval_steps": list(range(n + 1)),
                "accuracy": acc, "trap_share": [0.1] * n, "hard_share": [0.1] * n,
                "no_signal_share": [0.4] * n, "seconds": 1.0}

    result = {"strategies": ["uniform", "x"], "seeds": [0, 1], "runs": [
        run("uniform", 0, [0.3, 0.4, 0.5, 0.6]), run("uniform", 1, [0.2, 0.3, 0.4, 0.5]),
        run("x", 0, [0.3, 0.6, 0.7, 0.8]), run("x", 1, [0.2, 0.3, 0.5, 0.6])]}
    s = summarise(result)["strategies"]
    assert s["uniform"]["steps_to_target"] == [3, 3]
    assert s["x"]["steps_to_target"] == [1, 2]
    assert s["x"]["ratio_to_uniform"] == pytest.approx(1.5 / 3)
    assert s["x"]["final_mean"] == pytest.approx(0.7)
    fixed = summarise(result, target=0.55)["strategies"]
    assert fixed["uniform"]["steps_to_target"] == [3, None]


def test_cli_parsing():
    assert parse_params(["actor_curator:lr=0.01", "sec:field=skill", "pcl:steps=2"],
                        ["sec", "pcl", "actor_curator"]) == {
        "actor_curator": {"lr": 0.01}, "sec": {"field": "skill"}, "pcl": {"steps": 2}}
    with pytest.raises(ValueError):
        parse_params(["pcl:lr"], ["pcl"])
    with pytest.raises(ValueError):
        parse_params(["pcl:lr=1"], ["uniform"])
    assert parse_student(["lr=0.5"]).lr == 0.5
    with pytest.raises(ValueError):
        parse_student(["nope=1"])


# -- the real thing: in-process service, real client -----------------------------------

@pytest.mark.slow
def test_actor_curator_beats_uniform_on_a_short_run(tmp_path):
    """Same bank, same initial student, same seed: after 100 steps the Û-trained curator
    has a higher held-out accuracy than uniform selection, over HTTP. (The family of
    scenarios, 5 held-out seeds each, is in bench/results/family-heldout.md.)"""
    from curator.sim.report import write_report
    from curator.sim.runner import compare
    from curator.sim.trainer import TrainerConfig

    result = compare(["uniform", "actor_curator"], [0],
                     trainer=TrainerConfig(steps=100, batch_size=64, pool_size=512),
                     bank_config=BankConfig(n_problems=5000, n_heldout=1000),
                     progress=False)
    summary = write_report(result, tmp_path)
    assert (tmp_path / "sim.png").stat().st_size > 0
    assert "| actor_curator |" in (tmp_path / "sim.md").read_text()
    runs = {r["strategy"]: r for r in result["runs"]}
    uni, ac = runs["uniform"], runs["actor_curator"]
    assert uni["accuracy"][0] == ac["accuracy"][0]  # the same student at the start
    assert len(ac["accuracy"]) == 101 and len(ac["trap_share"]) == 100
    # during warm-up (dormant_steps = 5) actor_curator selects uniformly, exactly like
    # the uniform run with the same seed: the comparison is paired
    assert ac["accuracy"][:6] == uni["accuracy"][:6]
    assert ac["accuracy"][6:] != uni["accuracy"][6:]
    assert ac["accuracy"][-1] > uni["accuracy"][-1], summary["strategies"]
