"""Named scenarios: structurally different students and banks to judge a curriculum on.

One simulated student is one opinion. A scenario fixes a bank (bank.py), a student
(student.py), the embedder the service uses for the bank, and a default run length
(B = 64, M = 512, G = 8), so that a method can be compared on several structurally
different problems by name (`get_scenario("chain")`). What each one tests:

ring         today's model (bank.py, student.py defaults): skills on a ring with
             transfer, 10% coin-flip traps, 10% far-too-hard problems, 20 000 problems
             with provided features. Tests: skip groups without signal, avoid the
             unreachable.
chain        prerequisite chain: skill k learns only once skill k−1 is known (a gate on
             the step), transfer by chain distance. The useful frontier moves during a
             run; a problem's pass rate says how *learnable* it looks, not whether its
             skill can move now. Tests: tracking learning progress, not just p ≈ 0.5.
text-hash    a text bank (templates, text.py) embedded by the service's hashing
text-minilm  embedder / by MiniLM: skill and difficulty are only partly visible in the
             embedding (surface forms shared between skills). Tests: a feature-based
             curator with real, imperfect prompt embeddings instead of clean features.
forgetting   capacity decay: abilities slide back toward their start unless practised.
             Tests: revisiting mastered skills instead of abandoning them.
traps        30% coin-flip traps + 10% unanswerable problems that look ordinary, 5 000
             problems (each revisited ~5×). Tests: resisting noisy reward (traps have
             signal but teach noise) and noticing problems that never pay.
small-bank   2 000 problems, each revisited ~13× in 400 steps (MATH-sized sets).
             Tests: per-problem history and memorisation (revisited problems saturate).
large-bank   32 000 problems, each seen about once (0.8×) in 400 steps. Tests:
             generalising from features to unseen problems; per-problem history is
             useless.

Calibration (the only tuning; fixed before any strategy was run on a scenario): the
student's `lr` (and chain's `gate_threshold`, forgetting's `forgetting`) were set with
*uniform* selection only, offline (`run_uniform`: shuffled passes over the bank without
replacement, batches of 64, G = 8 Bernoulli rollouts, `Student.step`), on calibration
seeds 1000–1002 (never 0–9), so that after 400 steps uniform is still rising, has gained
roughly half to two thirds of the way from its start to the scenario's ceiling (every
held-out problem that is not far-too-hard solved), and ≥ 30% of groups have no reward
variance early on. Values tried and results: bench/sim_scenarios.md (regenerate the
table with `python -m curator.sim.scenarios`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from curator.sim.bank import HARD, BankConfig, SimBank
from curator.sim.policy import POLICY_SCENARIOS
from curator.sim.protocol import Scenario
from curator.sim.student import StudentConfig

EMBEDDERS = ("provided", "hash", "minilm")
CALIBRATION_SEEDS = (1000, 1001, 1002)
EARLY_STEPS = 50  # "early on" for the no-signal share


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="ring",
        summary="today's model: 8 skills on a ring, 10% traps, 10% far-too-hard, 20k problems",
        bank=BankConfig(),
        student=StudentConfig(),
    ),
    Scenario(
        name="chain",
        summary="prerequisite chain: skill k learns only once k-1 is known; frontier moves",
        bank=BankConfig(),
        student=StudentConfig(topology="chain", lr=0.8, gate_threshold=2.0, gate_slope=2.0),
    ),
    Scenario(
        name="text-hash",
        summary="template prompts, 10k problems, embedded by the service's hash embedder",
        bank=BankConfig(n_problems=10_000, text=True),
        student=StudentConfig(lr=0.2),
        embedder="hash",
    ),
    Scenario(
        name="text-minilm",
        summary="the text-hash bank and student, embedded by MiniLM",
        bank=BankConfig(n_problems=10_000, text=True),
        student=StudentConfig(lr=0.2),
        embedder="minilm",
    ),
    Scenario(
        name="forgetting",
        summary="capacity decay: unpractised abilities slide back; revisiting matters",
        bank=BankConfig(),
        student=StudentConfig(lr=0.45, forgetting=0.004),
    ),
    Scenario(
        name="traps",
        summary="30% coin-flip traps + 10% ordinary-looking unanswerable, 5k problems",
        bank=BankConfig(n_problems=5_000, trap_share=0.30, unanswerable_share=0.10),
        student=StudentConfig(lr=0.45),
    ),
    Scenario(
        name="noisy-source",
        summary="20% coin flips, most from one source the embedding can find (0.5 forever)",
        bank=BankConfig(trap_share=0.20, trap_source=0.8),
        student=StudentConfig(lr=0.3),
    ),
    Scenario(
        name="small-bank",
        summary="2k problems, each revisited ~13x in 400 steps (MATH-sized)",
        bank=BankConfig(n_problems=2_000),
        student=StudentConfig(lr=0.2),
    ),
    Scenario(
        name="large-bank",
        summary="32k problems, each seen about once in 400 steps",
        bank=BankConfig(n_problems=32_000),
        student=StudentConfig(lr=0.2),
    ),
    *POLICY_SCENARIOS,
)}


def named_only() -> dict[str, Scenario]:
    """Scenarios run only when named (not in `all`): the tiny-transformer reasoning-gym
    student costs ~3.5 min a run here (bench/gym_calibration.md), which would take
    `make bench-sim` far past its budget. Needs the `sim` extra (reasoning-gym)."""
    from curator.sim.gym import GYM_SCENARIOS

    return {sc.name: sc for sc in GYM_SCENARIOS}


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`; ValueError naming the known ones otherwise."""
    if name in SCENARIOS:
        return SCENARIOS[name]
    extra = named_only()
    if name in extra:
        return extra[name]
    raise ValueError(f"unknown scenario {name!r}; choose one of "
                     f"{', '.join([*SCENARIOS, *extra])}")


def ceiling(bank: SimBank) -> float:
    """Held-out accuracy with every reachable problem solved: the share of held-out
    problems that are not far-too-hard (those stay unsolved in any realistic run)."""
    return float((bank.heldout.kind != HARD).mean())


@dataclass
class UniformRun:
    """Held-out accuracy after each step (index 0 = before training) and the share of
    groups without reward variance per step, for one offline uniform run."""

    accuracy: list[float] = field(default_factory=list)
    no_signal: list[float] = field(default_factory=list)
    ceiling: float = 0.0

    @property
    def early_no_signal(self) -> float:
        return float(np.mean(self.no_signal[:EARLY_STEPS]))


def uniform_order(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """Problem indices for `steps` batches: shuffled passes over the bank, without
    replacement within a pass (a batch straddling two passes may repeat a problem)."""
    rng = np.random.default_rng([seed, 0xCA1])
    need = steps * batch
    passes = [rng.permutation(n) for _ in range(-(-need // n))]
    return np.concatenate(passes)[:need].reshape(steps, batch)


def run_uniform(scenario: Scenario, seed: int, steps: int | None = None,
                batch_size: int = 64, rollouts: int = 8,
                bank: SimBank | None = None) -> UniformRun:
    """Uniform selection on the scenario, offline (no service): the calibration loop.
    Student and bank are drawn from `seed`; the bank can be passed to reuse it."""
    steps = scenario.steps if steps is None else steps
    bank = bank or scenario.make_bank(seed)
    student = scenario.student.build(bank, seed)
    rng = np.random.default_rng([seed, 0xCA2])
    out = UniformRun(accuracy=[student.accuracy(bank.heldout)], ceiling=ceiling(bank))
    for idx in uniform_order(len(bank.train), steps, batch_size, seed):
        rewards = student.rollouts(bank.train, idx, rollouts, rng)
        student.step(bank.train, idx, rewards, rng)
        out.no_signal.append(float((rewards.std(axis=1) == 0).mean()))
        out.accuracy.append(student.accuracy(bank.heldout))
    return out


def calibration_row(scenario: Scenario, seeds: tuple[int, ...] = CALIBRATION_SEEDS) -> dict:
    """Uniform's mean initial/mid/final accuracy, ceiling, share of the gain reached,
    late slope and no-signal shares over the calibration seeds."""
    runs = [run_uniform(scenario, s) for s in seeds]
    acc = np.array([r.accuracy for r in runs])
    init, final = acc[:, 0].mean(), acc[:, -1].mean()
    ceil = float(np.mean([r.ceiling for r in runs]))
    late = acc[:, -1] - acc[:, -1 - min(100, acc.shape[1] - 1)]
    return {
        "name": scenario.name, "init": float(init), "mid": float(acc[:, acc.shape[1] // 2].mean()),
        "final": float(final), "ceiling": ceil, "gain_share": float((final - init) / (ceil - init)),
        "last100": float(late.mean()),
        "early_no_signal": float(np.mean([r.early_no_signal for r in runs])),
        "no_signal": float(np.mean([np.mean(r.no_signal) for r in runs])),
    }


def main(names: list[str]) -> None:
    """Print the calibration table (uniform only) for the named or all scenarios."""
    print("| scenario | init → mid → final | ceiling | share of gain | Δ last 100 steps "
          "| no-signal first 50 / all |")
    print("|---|---|---|---|---|---|")
    for name in names or list(SCENARIOS):
        r = calibration_row(get_scenario(name))
        print(f"| {r['name']} | {r['init']:.3f} → {r['mid']:.3f} → {r['final']:.3f} "
              f"| {r['ceiling']:.3f} | {r['gain_share']:.2f} | {r['last100']:+.3f} "
              f"| {r['early_no_signal']:.2f} / {r['no_signal']:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
