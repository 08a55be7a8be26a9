"""The gym student: a tiny transformer trained by a real GRPO step on reasoning-gym.

Fast tests use a tiny variant (a 1-layer d=32 model, a 5-step warm start, a bank of a
few dozen problems); nothing here needs the cached full-size warm start.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("reasoning_gym")

from curator.sim.bank import NORMAL, TRAP, UNANSWERABLE, WRONG_KEY  # noqa: E402
from curator.sim.direct import simulate_run_direct  # noqa: E402
from curator.sim.gym import (  # noqa: E402
    GYM_SCENARIOS,
    GymBankConfig,
    GymStudentConfig,
    compact,
    to_answer,
)
from curator.sim.protocol import Scenario  # noqa: E402
from curator.sim.trainer import TrainerConfig  # noqa: E402

# large noise shares so that a small bank has several of each kind
TINY_BANK = GymBankConfig(per_level=8, heldout_per_level=2, cells=None, heldout_share=None,
                          trap_share=0.2, wrong_key_share=0.15, unanswerable_share=0.15)
TINY_STUDENT = GymStudentConfig(d_model=32, n_layer=1, n_head=2, warm_steps=5, warm_batch=16,
                                warm_pool=16, lr=3e-3, lr_warmup=0, cache=False)


@pytest.fixture(scope="module")
def bank():
    return TINY_BANK.make(7)


def _answer_text(item) -> str:
    """What the model would have to emit for the item's reference `key`."""
    return item.key.replace(" ", "") if item.task == "arc_1d" else item.key


def test_bank_layout_and_kinds(bank) -> None:
    t = bank.train
    n = len(t)
    assert n == 3 * 3 * 8 and len(bank.heldout) == 3 * 3 * 2
    assert t.prompts is not None and len(t.prompts) == n and t.features.shape == (n, 0)
    assert set(np.unique(t.skill)) == {0, 1, 2} and set(np.unique(t.bucket)) == {1, 2, 3}
    counts = np.bincount(t.kind, minlength=5)
    assert counts[TRAP] == round(0.2 * n) and counts[WRONG_KEY] == round(0.15 * n)
    assert counts[UNANSWERABLE] > 0
    assert (bank.heldout.kind == NORMAL).all()
    meta = next(iter(bank.problems()))["metadata"]
    assert set(meta) >= {"skill", "difficulty", "kind"}
    again = TINY_BANK.make(7)
    assert again.train.prompts == t.prompts and (again.train.kind == t.kind).all()
    assert TINY_BANK.make(8).train.prompts != t.prompts


def test_verifiers_per_kind(bank) -> None:
    stud = TINY_STUDENT.build(bank, 0)
    items = bank.train.items
    rng = np.random.default_rng(0)
    for it in items:
        right = compact_answer(it.entry["answer"], it.task)
        if it.kind == NORMAL:
            assert stud.score(it, right, rng) == 1.0
            assert stud.score(it, "x", rng) == 0.0
        elif it.kind == WRONG_KEY:
            # the fixed wrong key is rewarded, the true answer is not
            assert it.key != it.entry["answer"]
            assert stud.score(it, _answer_text(it), rng) == 1.0
            assert stud.score(it, right, rng) < 1.0
        elif it.kind == UNANSWERABLE:
            # scored against the original answer, but the input no longer holds it
            assert stud.score(it, right, rng) == 1.0
            assert "?" in it.source and len(it.entry["answer"]) >= 2
            assert compact(it.task, it.entry) != it.source
    # a coin flip whatever the answer: right and garbage answers pay alike, ~half
    trap = next(it for it in items if it.kind == TRAP)
    right = compact_answer(trap.entry["answer"], trap.task)
    good = [stud.score(trap, right, rng) for _ in range(2000)]
    bad = [stud.score(trap, "zzz", rng) for _ in range(2000)]
    assert abs(np.mean(good) - 0.5) < 0.05 and abs(np.mean(bad) - 0.5) < 0.05


def compact_answer(answer: str, task: str) -> str:
    text = answer.replace(" ", "") if task == "arc_1d" else answer
    assert to_answer(task, text) == answer
    return text


def test_unanswerable_problems_do_not_pay_in_practice() -> None:
    """Sampled completions of a warm-started (tiny) model on corrupted inputs: at most
    an occasional chance match."""
    bank = GymBankConfig(per_level=30, heldout_per_level=1, cells=None, heldout_share=None,
                         trap_share=0.0,
                         wrong_key_share=0.0, unanswerable_share=0.3).make(3)
    stud = TINY_STUDENT.build(bank, 0)
    idx = np.where(bank.train.kind == UNANSWERABLE)[0]
    assert len(idx) >= 50
    rewards = stud.rollouts(bank.train, idx, 8, np.random.default_rng(0))
    assert (rewards == 1.0).mean() < 0.02


def _normalised_logprob(stud, model, prompts, g, toks, valid):
    import torch

    from curator.sim import tiny_lm

    with torch.no_grad():
        lp = tiny_lm.completion_logprobs(model, prompts, g, toks)
    return (((lp * valid).sum(1) / valid.sum(1)).numpy())


def test_log_ratios_are_the_fresh_forward_differences(bank) -> None:
    stud = TINY_STUDENT.build(bank, 1)
    rng = np.random.default_rng(1)
    idx = np.arange(12)
    rewards = stud.rollouts(bank.train, idx, 4, rng)
    pending = stud._pending
    before = copy.deepcopy(stud.model)
    out = stud.step(bank.train, idx, rewards, rng)
    toks, valid = pending["toks"], pending["valid"]
    old = _normalised_logprob(stud, before, pending["prompts"], 4, toks, valid)
    new = _normalised_logprob(stud, stud.model, pending["prompts"], 4, toks, valid)
    # the sampler's log-probs (KV cache) are the teacher-forced ones
    sampled = ((pending["logps"] * valid).sum(1) / valid.sum(1)).numpy()
    np.testing.assert_allclose(sampled, old, atol=1e-5)
    assert out.log_ratios.shape == (12, 4)
    np.testing.assert_allclose(out.log_ratios.reshape(-1), new - old, atol=1e-5)
    assert np.abs(out.log_ratios).max() > 1e-4  # the step really moved the policy


def test_step_needs_its_rollouts(bank) -> None:
    stud = TINY_STUDENT.build(bank, 1)
    rng = np.random.default_rng(0)
    rewards = stud.rollouts(bank.train, np.arange(4), 2, rng)
    with pytest.raises(RuntimeError):
        stud.step(bank.train, np.arange(1, 5), rewards, rng)


def test_no_signal_groups_do_not_move_the_policy(bank) -> None:
    stud = TINY_STUDENT.build(bank, 2)
    rng = np.random.default_rng(0)
    idx = np.arange(6)
    stud.rollouts(bank.train, idx, 4, rng)
    w0 = [p.detach().clone() for p in stud.model.parameters()]
    out = stud.step(bank.train, idx, np.ones((6, 4)), rng)  # every advantage 0
    assert all(bool((p == q).all()) for p, q in zip(stud.model.parameters(), w0))
    np.testing.assert_allclose(out.log_ratios, 0.0, atol=1e-6)


def test_deterministic_given_seed(bank) -> None:
    def run(seed: int):
        stud = TINY_STUDENT.build(bank, seed)
        rng = np.random.default_rng([seed, 5])
        idx = np.arange(10)
        r = stud.rollouts(bank.train, idx, 4, rng)
        out = stud.step(bank.train, idx, r, rng)
        return r, out.log_ratios, stud.accuracy(bank.heldout)

    a, b, c = run(4), run(4), run(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


def test_warm_start_cache_is_reused(bank, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CURATOR_SIM_CACHE", str(tmp_path))
    cfg = GymStudentConfig(d_model=32, n_layer=1, n_head=2, warm_steps=3, warm_batch=8,
                           warm_pool=8)
    first = cfg.build(bank, 3)
    files = list(tmp_path.glob("gym-warm-*.pt"))
    assert len(files) == 1
    second = cfg.build(bank, 3)
    for p, q in zip(first.model.parameters(), second.model.parameters()):
        assert bool((p == q).all())
    cfg.build(bank, 4)
    assert len(list(tmp_path.glob("gym-warm-*.pt"))) == 2


@pytest.mark.parametrize("strategy", ["uniform", "actor_curator"])
def test_direct_engine_runs_the_gym_student(bank, strategy) -> None:
    scen = Scenario(name="gym-tiny-test", summary="", bank=TINY_BANK, student=TINY_STUDENT,
                    embedder="hash", steps=3,
                    trainer={"batch_size": 8, "pool_size": 16, "eval_every": 2})
    b = TINY_BANK.make(7)
    rec = simulate_run_direct(b, scen.features(b), strategy, seed=0,
                              trainer=TrainerConfig(**scen.trainer_defaults()),
                              student=scen.student)
    assert rec.eval_steps == [0, 2, 3]
    assert len(rec.no_signal_share) == 3
    assert len(rec.final_ability) == 3 and all(0 <= a <= 1 for a in rec.final_ability)


def test_scenarios_are_light_and_valid() -> None:
    import subprocess
    import sys

    code = ("import sys, curator.sim.gym as g; "
            "assert 'torch' not in sys.modules and 'reasoning_gym' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    names = [s.name for s in GYM_SCENARIOS]
    assert "gym-tiny-lm" in names
    for s in GYM_SCENARIOS:
        s.student.validate()
        s.bank.validate()
        assert s.embedder == "hash" and s.max_seeds == 2


def test_bank_cells_select_the_levels_of_each_task() -> None:
    cfg = GymBankConfig(per_level=4, heldout_per_level=2, heldout_share=None,
                        cells=(("chain_sum", (5, 3, 0)), ("arc_1d", (2, 0, 0))))
    b = cfg.make(7)
    t = b.train
    assert len(t) == 22 and len(b.heldout) == 2 * 6
    for k, sizes in enumerate([(5, 3, 0), (2, 0, 0), (4, 4, 4)]):  # letters: per_level
        for level, size in enumerate(sizes, start=1):
            assert int(((t.skill == k) & (t.bucket == level)).sum()) == size
            held = int(((b.heldout.skill == k) & (b.heldout.bucket == level)).sum())
            assert held == (2 if size else 0)
    with pytest.raises(ValueError):
        GymBankConfig(cells=(("chain_sum", (1, 1)),)).validate()
    with pytest.raises(ValueError):
        GymBankConfig(tasks=("arc_1d",), cells=(("arc_1d", (0, 0, 0)),)).validate()
    # the default composition names its tasks, so another task list still works
    assert GymBankConfig(tasks=("letter_counting",)).cell_size("letter_counting", 2) == 600
    # held-out counts in proportion to the cells (at least one per cell)
    prop = GymBankConfig(cells=(("chain_sum", (20, 10, 0)), ("arc_1d", (3, 0, 0)),
                                ("letter_counting", (1, 1, 1))), heldout_share=0.1).make(7)
    counts = [int(((prop.heldout.skill == k) & (prop.heldout.bucket == lv)).sum())
              for k in range(3) for lv in (1, 2, 3)]
    assert counts == [2, 1, 0, 1, 0, 0, 1, 1, 1]


def test_sampled_heldout_metric_is_repeatable(bank) -> None:
    from dataclasses import replace

    stud = replace(TINY_STUDENT, eval_samples=4).build(bank, 1)
    a, b = stud.accuracy(bank.heldout), stud.accuracy(bank.heldout)
    assert a == b and 0.0 <= a <= 1.0  # a fixed generator per evaluation
    s = stud.sampled_scores(bank.heldout, k=4)
    assert s.shape == (len(bank.heldout),) and np.isclose(s.mean(), a)
    # the warm-up ramps the GRPO learning rate
    stud = replace(TINY_STUDENT, lr_warmup=4).build(bank, 1)
    rng = np.random.default_rng(0)
    r = stud.rollouts(bank.train, np.arange(4), 2, rng)
    stud.step(bank.train, np.arange(4), r, rng)
    assert np.isclose(stud.opt.param_groups[0]["lr"], TINY_STUDENT.lr / 4)
