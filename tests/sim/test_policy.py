"""The real-policy MLP student (curator.sim.policy): its log-ratios are its own, GRPO
learns from real rewards, noise behaves as its verifier dictates, noise looks like
ordinary problems, and both engines' loops run it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from curator.sim.bank import HARD, NORMAL, TRAP, UNANSWERABLE, WRONG_KEY
from curator.sim.policy import (
    NO_KEY,
    POLICY_SCENARIOS,
    MLPStudentConfig,
    PolicyBankConfig,
    make_policy_bank,
)
from curator.sim.student import realised_improvement

torch = pytest.importorskip("torch")

SMALL = PolicyBankConfig(n_problems=3000, n_heldout=400, n_warm=1024)
STUDENT = MLPStudentConfig(warm_steps=60)


@pytest.fixture(scope="module")
def bank():
    return make_policy_bank(SMALL, seed=3)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pick(bank, kind: int, n: int) -> np.ndarray:
    return np.flatnonzero(bank.train.kind == kind)[:n]


def test_importing_policy_does_not_import_torch():
    code = ("import sys, curator.sim.policy as p; assert p.POLICY_SCENARIOS; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bank_kinds_verifiers_and_metadata(bank):
    t = bank.train
    assert len(t) == 3000 and t.features.shape == (3000, 64)
    np.testing.assert_allclose(np.linalg.norm(t.features, axis=1), 1.0, atol=1e-5)
    for code, share in ((TRAP, 0.10), (WRONG_KEY, 0.05), (UNANSWERABLE, 0.05), (HARD, 0.10)):
        assert abs((t.kind == code).mean() - share) < 1e-3
    assert not np.isin(bank.heldout.kind, (TRAP, WRONG_KEY, UNANSWERABLE)).any()
    ordinary = np.isin(t.kind, (NORMAL, HARD))
    np.testing.assert_array_equal(t.key[ordinary], t.answer[ordinary])
    wrong = t.kind == WRONG_KEY
    assert (t.key[wrong] != t.answer[wrong]).all() and (t.key[wrong] >= 0).all()
    assert (t.key[np.isin(t.kind, (TRAP, UNANSWERABLE))] == NO_KEY).all()
    # skill k answers in classes k..k+4, and so do its wrong keys and hash answers
    off = t.answer - t.skill
    assert off.min() == 0 and off.max() == SMALL.answer_window - 1
    off = t.key[wrong] - t.skill[wrong]
    assert off.min() >= 0 and off.max() < SMALL.answer_window
    p = next(bank.problems())
    assert set(p["metadata"]) == {"skill", "difficulty", "kind"} and len(p["embedding"]) == 64
    assert bank.summary()["config"]["n_skills"] == 8


def test_log_ratios_are_the_networks_own(bank):
    st = STUDENT.build(bank, seed=0)
    t = bank.train
    idx = np.arange(64)
    before = st.log_probs(t, idx)
    rewards = st.rollouts(t, idx, 8, np.random.default_rng(0))
    answers = st._pending[2].copy()
    out = st.step(t, idx, rewards, np.random.default_rng(1))
    after = st.log_probs(t, idx)  # a fresh forward pass after the step
    expect = (np.take_along_axis(after, answers, axis=1)
              - np.take_along_axis(before, answers, axis=1))
    assert out.log_ratios.shape == (64, 8)
    assert np.abs(out.log_ratios).max() > 1e-3  # the step moved the policy
    np.testing.assert_allclose(out.log_ratios, expect, atol=2e-5)
    with pytest.raises(RuntimeError):  # a step needs the rollouts it trains on
        st.step(t, idx, rewards, np.random.default_rng(1))


def test_grpo_on_correct_answers_raises_p_correct(bank):
    st = STUDENT.build(bank, seed=0)
    t = bank.train
    normal = np.flatnonzero(t.kind == NORMAL)
    p = st.correct_prob(t, normal)
    idx = normal[(p > 0.15) & (p < 0.85)][:64]
    assert len(idx) >= 32
    p0 = st.correct_prob(t, idx).mean()
    rng = np.random.default_rng(0)
    for _ in range(5):
        st.step(t, idx, st.rollouts(t, idx, 8, rng), rng)
    assert st.correct_prob(t, idx).mean() > p0 + 0.05


def test_coin_flips_have_positive_utility_but_teach_nothing(bank):
    t = bank.train
    rng = np.random.default_rng(0)
    trap = _pick(bank, TRAP, 64)
    st = STUDENT.build(bank, seed=0)
    # the verifier is a coin flip: a reward rate of 1/2 whatever the policy answers
    r = st.rollouts(t, trap, 64, rng)
    assert abs(r.mean() - 0.5) < 0.02
    hit = st._pending[2] == t.answer[trap][:, None]
    assert abs(r[hit].mean() - r[~hit].mean()) < 0.05
    acc0 = st.accuracy(bank.heldout)
    u = []
    for _ in range(30):
        r = st.rollouts(t, trap, 8, rng)
        u.append(realised_improvement(r, st.step(t, trap, r, rng).log_ratios))
    u = np.concatenate(u)
    assert u.mean() > 0  # in-sample, the sampled answers were reinforced ...
    assert st.accuracy(bank.heldout) < acc0 + 0.005  # ... yet nothing was learned
    np.testing.assert_array_equal(st.train_prob(t, trap), 0.5)
    # the same budget on ordinary problems of the same skills does raise it
    ref = STUDENT.build(bank, seed=0)
    normal = np.flatnonzero(t.kind == NORMAL)[:64]
    for _ in range(30):
        ref.step(t, normal, ref.rollouts(t, normal, 8, rng), rng)
    assert ref.accuracy(bank.heldout) > acc0 + 0.01


def test_wrong_key_training_raises_the_wrong_answer(bank):
    t = bank.train
    st = STUDENT.build(bank, seed=0)
    wrong = np.flatnonzero(t.kind == WRONG_KEY)
    p = st.train_prob(t, wrong)
    idx = wrong[np.argsort(-p, kind="stable")[:32]]  # the ones that pay now and then
    p0 = st.train_prob(t, idx)
    correct0 = st.correct_prob(t, idx)
    rng = np.random.default_rng(0)
    for _ in range(10):
        st.step(t, idx, st.rollouts(t, idx, 8, rng), rng)
    assert st.train_prob(t, idx).mean() > p0.mean() + 0.1
    assert st.correct_prob(t, idx).mean() < correct0.mean()
    # unanswerable problems never pay, whatever the policy
    un = _pick(bank, UNANSWERABLE, 32)
    assert st.rollouts(t, un, 8, rng).sum() == 0
    np.testing.assert_array_equal(st.train_prob(t, un), 0.0)


def test_deterministic_given_seed():
    def run(seed: int):
        b = make_policy_bank(SMALL, seed=3)
        st = STUDENT.build(b, seed=seed)
        rng = np.random.default_rng([seed, 1])
        idx = np.arange(64)
        r = st.rollouts(b.train, idx, 8, rng)
        return r, st.step(b.train, idx, r, rng).log_ratios, st.abilities()

    a, b, c = run(0), run(0), run(1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(a[1], c[1])
    b1, b2 = make_policy_bank(SMALL, seed=3), make_policy_bank(SMALL, seed=4)
    np.testing.assert_array_equal(b1.train.inputs, make_policy_bank(SMALL, seed=3).train.inputs)
    assert not np.array_equal(b1.train.features, b2.train.features)


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    """Held-out AUC of a least-squares linear probe for y from x."""
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[: len(y) // 2], order[len(y) // 2:]
    xb = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(xb[tr], y[tr] - y[tr].mean(), rcond=None)[0]
    s = xb[te] @ w
    return float((s[y[te] == 1][:, None] > s[y[te] == 0][None, :]).mean())


def test_noise_looks_like_ordinary_problems_of_its_skill():
    b = make_policy_bank(replace(SMALL, n_problems=8000), seed=5)
    t = b.train
    keep = t.kind != HARD
    x = t.features[keep].astype(np.float64)
    noise = np.isin(t.kind[keep], (TRAP, WRONG_KEY, UNANSWERABLE)).astype(np.float64)
    assert 0.4 < _auc(x, noise) < 0.6
    # the same probe does see what the features do carry (skill, difficulty)
    assert _auc(x, (t.skill[keep] == 0).astype(np.float64)) > 0.9
    assert _auc(x, (t.difficulty[keep] > 1.0).astype(np.float64)) > 0.7
    for code in (TRAP, WRONG_KEY, UNANSWERABLE):
        bk = np.bincount(t.bucket[t.kind == code], minlength=6)[1:] / (t.kind == code).sum()
        bn = np.bincount(t.bucket[t.kind == NORMAL], minlength=6)[1:] / (t.kind == NORMAL).sum()
        np.testing.assert_allclose(bk, bn, atol=0.07)


def test_difficulty_is_real(bank):
    """Close to the teacher's boundary (high d) is harder for the warm-started policy
    on the skills it was warm-started on; far-too-hard problems are out of reach."""
    st = STUDENT.build(bank, seed=0)
    t = bank.train
    p = st.correct_prob(t)
    warm = (t.kind == NORMAL) & (t.skill < 2)
    easy, hard = warm & (t.difficulty < 1.0), warm & (t.difficulty > 1.0)
    assert p[easy].mean() > p[hard].mean() + 0.1
    assert p[t.kind == HARD].mean() < 0.08 < p[t.kind == NORMAL].mean() / 3  # chance: 1/12


def test_learning_the_prerequisite_makes_the_next_skill_reachable(bank):
    """Skill 6 answers in classes 6..10. After training on skill 5 (classes 5..9) the
    policy already solves part of it; after as much training on skill 0 (classes 0..4)
    it is confidently wrong there: no reward, nothing to learn from."""
    t = bank.train
    acc = {}
    for pre in (5, 0):
        st = MLPStudentConfig().build(bank, seed=0)
        rng = np.random.default_rng(0)
        pool = np.flatnonzero((t.kind == NORMAL) & (t.skill == pre))
        for _ in range(60):
            idx = rng.choice(pool, 64, replace=False)
            st.step(t, idx, st.rollouts(t, idx, 8, rng), rng)
        six = np.flatnonzero((t.kind == NORMAL) & (t.skill == 6))[:64]
        acc[pre] = (st.abilities()[6], st.rollouts(t, six, 8, rng).mean())
    assert acc[5][0] > 0.15 and acc[5][1] > 0.15
    assert acc[0][0] < 0.03 and acc[0][1] < 0.03


@pytest.mark.parametrize("strategy", ["uniform", "actor_curator"])
def test_direct_engine_runs_the_mlp_scenario(strategy):
    from curator.sim.direct import simulate_run_direct
    from curator.sim.trainer import TrainerConfig

    sc = POLICY_SCENARIOS[0]
    assert [s.name for s in POLICY_SCENARIOS][:2] == ["mlp-skills", "mlp-revisit"]
    sc = replace(sc, bank=replace(sc.bank, n_problems=1500, n_heldout=300, n_warm=512),
                 student=replace(sc.student, warm_steps=30))
    bank = sc.make_bank(0)
    rec = simulate_run_direct(bank, sc.features(bank), strategy, seed=0,
                              trainer=TrainerConfig(steps=5), student=sc.student)
    assert len(rec.accuracy) == 6 and len(rec.noise_share) == 5
    assert all(0.0 <= a <= 1.0 for a in rec.accuracy)
    assert len(rec.final_ability) == 8
