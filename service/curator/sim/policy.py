"""A real-policy student: a torch MLP over answers, trained by a real GRPO step.

The analytic student (student.py) writes its log-ratios from a formula. This one does
not: it is a small network that samples answers, is updated by a GRPO/PPO step on exactly
the rollouts it sampled, and reports its own log π_new(a_i|x) − log π_old(a_i|x). How
much a coin-flip problem's in-sample utility Û looks like a useful one's is then a
property of the network's dynamics, not a constant of the simulator.

Task
----
Each problem is an instance z ∈ R^D (D = `instance_dim` = 8, z ~ N(0, I)) of a skill k
and its answer is one of A = `n_answers` = 12 classes. Skill k has a *teacher rule*, a
linear scorer over its answer window, classes k..k+4 (`answer_window` = 5):
answer_k(z) = argmax_{a ∈ window_k} (T_k z)_a. The rules form a prerequisite chain: T_0
is random and T_k = ρ·T_{k−1} + √(1−ρ²)·fresh_k (ρ = `skill_drift` = 0.8), and each
skill's window drops its predecessor's lowest class and adds one new class. So skill k's
rule is skill k−1's with a modification: neighbouring skills agree on 45% of instances,
two apart on 27%, then 15%, 6%, and skills five or more apart share no answer at all.

Nothing gates learning by formula. What makes a skill learnable is whether the policy
still samples its answers: GRPO only learns from groups with reward variance, and a
policy made confident by training elsewhere has all but stopped producing the classes it
was never rewarded for. A policy
that knows skill k−1 already solves many of skill k's instances (and produces k's classes
but the new one), so k has signal; a policy that is confident elsewhere gets all-zero
groups on k and nothing to learn from. Measured (bench/sim_scenarios.md, "Real-policy
students: MLP"): under uniform training skills 6–7 stay at ~0.01 held-out accuracy for
the first 100 steps and then rise behind skill 5, the frontier moving along the chain;
after 100 steps of training on skill 6, skill 7 starts at 0.45 and reaches 0.67 in 100
more steps, after 100 steps on skill 0 it starts at 0.00, every group is all-zero and it
ends at 0.01. (A freshly warm-started policy, still exploring, can learn any single skill
if trained on it alone.)

Difficulty is closeness to the teacher's decision boundary: the margin between the top
two teacher scores. Its rank among the skill's instances is mapped to a normal quantile,
d = μ_d + σ_d·Φ⁻¹(rank of −log margin), so d is on bank.py's scale (only the features
and labels use d; what makes a problem hard is the margin itself).

Kinds (shares of the bank; the held-out set has none of the noise kinds):

* normal — reward 1 iff the answer is the teacher's.
* hard (far too hard) — the reference answer is a per-instance hash (any class of the
  skill's window but the teacher's): no rule connects it to the input, so the policy
  cannot generalise to it (a revisited one can be memorised); once the skill is learned
  the policy puts little mass on it. Nominal difficulty as in bank.py (μ_d + 4σ_d +
  U(0, 2)).
* trap — a coin-flip verifier: reward ~ Bernoulli(0.5) whatever the answer.
* wrong_key — a fixed wrong answer (a class of the window, not the teacher's) is
  rewarded: reward 1 iff the answer equals it. Training on it teaches the wrong answer
  for that instance.
* unanswerable — the reference is no answer the policy can give: reward always 0.

Noise problems are drawn exactly like normal problems of their skill (instance, margin,
difficulty, features, label); only the verifier differs.

The service's features (provided embeddings, dim 64, L2-normalised) are made as in
bank.py: x = c_k + feature_difficulty·tanh((d + ε_p − μ_d)/(2σ_d))·u + noise, skill
centres c_k by a random walk, one shared partly-visible difficulty direction u, per-problem
noise; metadata `skill`, `difficulty` (bucket "1".."5" of a noisy rating; hard: "5") and
`kind`. The policy never sees these features: its input is its own encoding of the
instance, [one-hot(k), z, one-hot(k) ⊗ z] (the outer product lets a skill's own
rule be represented without crowding the others; the shared z inputs and hidden layers
carry the transfer).

Student
-------
An MLP [K + D + K·D = 80] → 128 → 128 → A (ReLU), trained with Adam (lr 2e-3).
`rollouts` samples G answers per problem from π_old (numpy, from the caller's rng),
scores them with the problem's verifier and keeps answers and log π_old for `step`.
`step` is GRPO: A_i = (r_i − mean)/(std + 1e-6) per group (population std), PPO
clipped-ratio loss (ε = 0.2) averaged over all n·G rollouts of the batch (groups without
variance only dilute it), `epochs` Adam updates on the whole batch (default 1: the update
is on-policy and the clip cannot bind; with 2 it binds on the second pass); then a
no-grad forward gives the returned log-ratios log π_new(a_i|x) − log π_old(a_i|x)
[n, G]. Before RL the student is warm-started by a short supervised phase (20 Adam
steps of 128) on easy instances (margin in the easier half) of skills 0..`warm_skills`−1
= 0–1, so early rewards are not all zero and a frontier exists (held-out accuracy after
it: ≈0.55 on skills 0–1, ≈0.2 on 2–3, ~0 beyond).

`accuracy(heldout)` is the mean probability of the reference answer (expected pass@1 at
temperature 1, as the analytic student's mean P(solve)); `abilities()` the same per skill
on the held-out problems that are not far-too-hard; `train_prob` P(reward = 1) now (trap
0.5, wrong_key π(wrong answer|x), unanswerable 0). Everything is deterministic given the
seed (a torch.Generator for the weights, numpy generators for data and sampling); the
caller sets torch's thread count. torch is imported only when a student is built, so
importing this module (scenarios.py lists POLICY_SCENARIOS) stays light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from curator.sim.bank import (
    HARD,
    TRAP,
    UNANSWERABLE,
    WRONG_KEY,
    ProblemSet,
    SimBank,
    _skill_centres,
)
from curator.sim.protocol import Scenario
from curator.sim.student import grpo_advantages

NO_KEY = -1  # the reference of an unanswerable problem: matches no answer


@dataclass(frozen=True)
class PolicyBankConfig:
    """A bank of procedurally generated problems for the MLP student (module doc)."""

    n_problems: int = 16_000
    n_skills: int = 8
    dim: int = 64  # the service's feature dimension
    n_answers: int = 12
    instance_dim: int = 8
    skill_drift: float = 0.8  # ρ between consecutive skills' teacher rules
    trap_share: float = 0.10
    wrong_key_share: float = 0.05
    unanswerable_share: float = 0.05
    hard_share: float = 0.10
    n_heldout: int = 1_000
    n_warm: int = 4_096  # easy supervised instances for the warm start
    warm_skills: int = 2  # the warm start covers skills 0..warm_skills−1
    difficulty_mean: float = 1.0
    difficulty_std: float = 2.5
    hard_offset_std: float = 4.0
    n_buckets: int = 5
    skill_relatedness: float = 0.5
    feature_difficulty: float = 0.6
    perceived_difficulty_noise: float = 0.75
    label_noise: float = 0.5
    feature_noise: float = 0.8
    answer_window: int = 5  # > 0: skill k answers in classes k..k+window−1 (0: all)
    skill_inputs: bool = True  # the policy input also holds one-hot(skill) ⊗ z
    text: bool = False  # provided features only

    @property
    def input_dim(self) -> int:
        k, d = self.n_skills, self.instance_dim
        return k + d + (k * d if self.skill_inputs else 0)

    def validate(self) -> None:
        if self.n_problems < 1 or self.n_skills < 1 or self.dim < 2:
            raise ValueError("n_problems, n_skills must be ≥ 1 and dim ≥ 2")
        if self.n_answers < 2 or self.instance_dim < 1:
            raise ValueError("n_answers must be ≥ 2 and instance_dim ≥ 1")
        shares = (self.trap_share, self.wrong_key_share, self.unanswerable_share,
                  self.hard_share)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError("kind shares must be ≥ 0 and sum to < 1")
        if not 0 <= self.skill_drift <= 1 or not 0 <= self.skill_relatedness < 1:
            raise ValueError("skill_drift must be in [0, 1], skill_relatedness in [0, 1)")
        if not 1 <= self.warm_skills <= self.n_skills or self.n_warm < 1:
            raise ValueError("warm_skills must be in [1, n_skills] and n_warm ≥ 1")
        if self.answer_window and not (
                2 <= self.answer_window <= self.n_answers - self.n_skills + 1):
            raise ValueError("answer_window must be 0 or in [2, n_answers − n_skills + 1]")
        if self.text:
            raise ValueError("the MLP bank has provided features only (text=False)")

    def make(self, seed: int) -> PolicyBank:
        return make_policy_bank(self, seed)


@dataclass
class PolicyProblemSet(ProblemSet):
    """ProblemSet plus what the policy and the verifier need (arrays of length n)."""

    inputs: np.ndarray | None = None  # float32 [n, input_dim]: [one-hot k, z, one-hot k ⊗ z]
    answer: np.ndarray | None = None  # int64: the reference (hard: the hash; else the teacher's)
    key: np.ndarray | None = None  # int64: the rewarded answer (wrong_key: the wrong one;
    # unanswerable, trap: NO_KEY)


@dataclass
class PolicyBank(SimBank):
    warm: PolicyProblemSet | None = None  # easy instances for the supervised warm start


def _kinds(n: int, cfg: PolicyBankConfig, rng: np.random.Generator) -> np.ndarray:
    kind = np.zeros(n, dtype=np.int8)
    start = 0
    for code, share in ((TRAP, cfg.trap_share), (WRONG_KEY, cfg.wrong_key_share),
                        (UNANSWERABLE, cfg.unanswerable_share), (HARD, cfg.hard_share)):
        count = int(round(share * n))
        kind[start:start + count] = code
        start += count
    return rng.permutation(kind)


def _teachers(cfg: PolicyBankConfig, rng: np.random.Generator) -> np.ndarray:
    """[K, A, D] teacher scorers: a random walk with correlation `skill_drift`."""
    a, d = cfg.n_answers, cfg.instance_dim
    out = np.empty((cfg.n_skills, a, d))
    out[0] = rng.standard_normal((a, d))
    rho = cfg.skill_drift
    for k in range(1, cfg.n_skills):
        out[k] = rho * out[k - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((a, d))
    return out


def _window(cfg: PolicyBankConfig, skill: np.ndarray) -> tuple[np.ndarray, int]:
    """(first answer class, width) of each skill's answer window."""
    if cfg.answer_window:
        return np.asarray(skill, dtype=np.int64), cfg.answer_window
    return np.zeros(len(skill), dtype=np.int64), cfg.n_answers


def _teacher(cfg: PolicyBankConfig, teachers: np.ndarray, skill: np.ndarray,
             z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(teacher answer, −log margin between its top two scores) per instance; only the
    classes in the skill's answer window compete."""
    scores = np.einsum("nad,nd->na", teachers[skill], z)
    lo, width = _window(cfg, skill)
    cls = np.arange(cfg.n_answers)[None, :]
    inside = (cls >= lo[:, None]) & (cls < lo[:, None] + width)
    scores = np.where(inside, scores, -np.inf)
    top2 = np.sort(scores, axis=1)[:, -2:]
    margin = np.maximum(top2[:, 1] - top2[:, 0], 1e-12)
    return scores.argmax(axis=1).astype(np.int64), -np.log(margin)


_QUANTILES = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.0005, 0.9995, 1999)])


def _difficulty_map(cfg: PolicyBankConfig, teachers: np.ndarray, rng: np.random.Generator):
    """−log margin → d on bank.py's scale: its rank in a reference sample of each skill,
    through the normal quantile function (d ~ N(μ_d, σ_d²) for normal problems)."""
    m = 2048
    refs = []
    for k in range(cfg.n_skills):
        z = rng.standard_normal((m, cfg.instance_dim))
        refs.append(np.sort(_teacher(cfg, teachers, np.full(m, k), z)[1]))
    refs_a = np.stack(refs)

    def to_d(skill: np.ndarray, raw: np.ndarray) -> np.ndarray:
        rank = np.zeros(len(raw))
        for k in range(cfg.n_skills):
            mask = skill == k
            rank[mask] = np.searchsorted(refs_a[k], raw[mask]) / m
        q = np.interp(rank, np.linspace(0.0005, 0.9995, 1999), _QUANTILES)
        return cfg.difficulty_mean + cfg.difficulty_std * q

    return to_d


def _encode(cfg: PolicyBankConfig, skill: np.ndarray, z: np.ndarray) -> np.ndarray:
    onehot = np.eye(cfg.n_skills)[skill]
    parts = [onehot, z]
    if cfg.skill_inputs:
        parts.append((onehot[:, :, None] * z[:, None, :]).reshape(len(z), -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _other_answer(cfg: PolicyBankConfig, skill: np.ndarray, answer: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """A class of the skill's answer window other than `answer`, uniformly."""
    lo, width = _window(cfg, skill)
    return lo + (answer - lo + 1 + rng.integers(0, width - 1, size=len(answer))) % width


def _draw(cfg: PolicyBankConfig, n: int, kind: np.ndarray, teachers: np.ndarray, to_d,
          centres: np.ndarray, direction: np.ndarray, edges: np.ndarray,
          rng: np.random.Generator) -> PolicyProblemSet:
    mu, sd = cfg.difficulty_mean, cfg.difficulty_std
    skill = rng.integers(0, cfg.n_skills, size=n)
    z = rng.standard_normal((n, cfg.instance_dim))
    teacher, raw = _teacher(cfg, teachers, skill, z)
    difficulty = to_d(skill, raw)
    hard = kind == HARD
    difficulty[hard] = mu + cfg.hard_offset_std * sd + rng.uniform(0.0, 2.0, size=hard.sum())
    answer = teacher.copy()
    answer[hard] = _other_answer(cfg, skill[hard], teacher[hard], rng)
    key = answer.copy()
    wrong = kind == WRONG_KEY
    key[wrong] = _other_answer(cfg, skill[wrong], teacher[wrong], rng)
    key[(kind == TRAP) | (kind == UNANSWERABLE)] = NO_KEY

    # features and label exactly as bank.py's, from d
    perceived = difficulty + rng.normal(0.0, cfg.perceived_difficulty_noise * sd, size=n)
    level = np.tanh((perceived - mu) / (2.0 * sd))
    noise = rng.standard_normal((n, cfg.dim)) * (cfg.feature_noise / np.sqrt(cfg.dim))
    feats = centres[skill] + cfg.feature_difficulty * level[:, None] * direction[None, :] + noise
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    rated = difficulty + rng.normal(0.0, cfg.label_noise * sd, size=n)
    bucket = np.searchsorted(edges, rated) + 1
    bucket[hard] = cfg.n_buckets
    return PolicyProblemSet(
        skill=skill.astype(np.int64), difficulty=difficulty, kind=kind,
        bucket=bucket.astype(np.int64), features=feats.astype(np.float32),
        inputs=_encode(cfg, skill, z), answer=answer, key=key)


def make_policy_bank(config: PolicyBankConfig | None = None, seed: int = 0) -> PolicyBank:
    """Draw the bank, its held-out set (normal and hard only) and the warm-start set."""
    cfg = config or PolicyBankConfig()
    cfg.validate()
    rng = np.random.default_rng([seed, 0x9011])
    teachers = _teachers(cfg, rng)
    to_d = _difficulty_map(cfg, teachers, rng)
    centres = _skill_centres(cfg, rng)  # type: ignore[arg-type]  # same fields as BankConfig
    direction = rng.standard_normal(cfg.dim)
    direction /= np.linalg.norm(direction)
    rated_sd = cfg.difficulty_std * np.sqrt(1.0 + cfg.label_noise**2)
    qs = np.arange(1, cfg.n_buckets) / cfg.n_buckets
    edges = np.array([NormalDist(cfg.difficulty_mean, rated_sd).inv_cdf(q) for q in qs])

    train = _draw(cfg, cfg.n_problems, _kinds(cfg.n_problems, cfg, rng), teachers, to_d,
                  centres, direction, edges, rng)
    held_hard = cfg.hard_share / (1.0 - cfg.trap_share - cfg.wrong_key_share
                                  - cfg.unanswerable_share)
    held_kind = np.zeros(cfg.n_heldout, dtype=np.int8)
    held_kind[: int(round(held_hard * cfg.n_heldout))] = HARD
    heldout = _draw(cfg, cfg.n_heldout, rng.permutation(held_kind), teachers, to_d,
                    centres, direction, edges, rng)
    # warm start: easy instances (margin in the easier half) of the first skills
    pool = _draw(cfg, 4 * cfg.n_warm, np.zeros(4 * cfg.n_warm, dtype=np.int8), teachers,
                 to_d, centres, direction, edges, rng)
    easy = np.flatnonzero((pool.skill < cfg.warm_skills)
                          & (pool.difficulty < cfg.difficulty_mean))[: cfg.n_warm]
    warm = _subset(pool, easy)
    return PolicyBank(config=cfg, seed=seed, train=train, heldout=heldout,  # type: ignore[arg-type]
                      bucket_edges=edges, warm=warm)


def _subset(p: PolicyProblemSet, idx: np.ndarray) -> PolicyProblemSet:
    return PolicyProblemSet(
        skill=p.skill[idx], difficulty=p.difficulty[idx], kind=p.kind[idx],
        bucket=p.bucket[idx], features=p.features[idx], inputs=p.inputs[idx],
        answer=p.answer[idx], key=p.key[idx])


# -- the student --------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPStudentConfig:
    hidden: int = 128
    layers: int = 2
    lr: float = 2e-3  # Adam, RL phase
    epochs: int = 1  # Adam updates per GRPO step (the whole batch each)
    clip: float = 0.2  # PPO ε
    warm_steps: int = 20  # supervised warm start: Adam steps ...
    warm_batch: int = 128  # ... of this many easy instances
    warm_lr: float = 3e-3

    def validate(self) -> None:
        if self.hidden < 1 or self.layers < 1 or self.epochs < 1:
            raise ValueError("hidden, layers and epochs must be ≥ 1")
        if self.lr <= 0 or self.warm_lr <= 0 or not 0 < self.clip < 1:
            raise ValueError("lr and warm_lr must be > 0 and clip in (0, 1)")
        if self.warm_steps < 0 or self.warm_batch < 1:
            raise ValueError("warm_steps must be ≥ 0 and warm_batch ≥ 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, bank: SimBank, seed: int) -> MLPStudent:
        if not isinstance(bank, PolicyBank):
            raise TypeError("the MLP student needs a PolicyBank (PolicyBankConfig.make)")
        return MLPStudent(self, bank, seed)


@dataclass
class PolicyStepOutcome:
    log_ratios: np.ndarray  # [n, G] log π_new(a_i|x) − log π_old(a_i|x)
    p_old: np.ndarray  # [n] P(reward = 1) before the step
    p_new: np.ndarray  # [n] after
    loss: float


class MLPStudent:
    """The torch MLP policy over answers (module doc)."""

    def __init__(self, config: MLPStudentConfig, bank: PolicyBank, seed: int) -> None:
        import torch

        config.validate()
        self.config = config
        self.bank = bank
        cfg = bank.config
        self.n_skills = cfg.n_skills
        self.n_answers = cfg.n_answers
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 0x31)
        sizes = [cfg.input_dim] + [config.hidden] * config.layers
        mods: list[Any] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            mods += [self._linear(a, b, gen), torch.nn.ReLU()]
        mods.append(self._linear(sizes[-1], cfg.n_answers, gen))
        self.net = torch.nn.Sequential(*mods)
        self._pending: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._warm_start(np.random.default_rng([seed, 0x3A7]))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)

    @staticmethod
    def _linear(fan_in: int, fan_out: int, gen: Any) -> Any:
        import torch

        lin = torch.nn.Linear(fan_in, fan_out)
        bound = 1.0 / np.sqrt(fan_in)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        return lin

    def _warm_start(self, rng: np.random.Generator) -> None:
        import torch

        warm = self.bank.warm
        cfg = self.config
        if warm is None or cfg.warm_steps == 0:
            return
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.warm_lr)
        x_all = torch.from_numpy(warm.inputs)
        y_all = torch.from_numpy(warm.answer)
        for _ in range(cfg.warm_steps):
            b = torch.from_numpy(rng.integers(0, len(warm), size=cfg.warm_batch))
            loss = torch.nn.functional.cross_entropy(self.net(x_all[b]), y_all[b])
            opt.zero_grad()
            loss.backward()
            opt.step()

    # -- probabilities ------------------------------------------------------------------

    def log_probs(self, problems: ProblemSet, idx: np.ndarray | None = None) -> np.ndarray:
        """log π(a|x) for every answer, float64 [n, A] (no grad)."""
        import torch

        x = problems.inputs if idx is None else problems.inputs[np.asarray(idx, np.int64)]  # type: ignore[attr-defined]
        with torch.no_grad():
            lp = torch.log_softmax(self.net(torch.from_numpy(x)), dim=-1)
        return lp.double().numpy()

    def _reward_prob(self, problems: ProblemSet, idx: np.ndarray, lp: np.ndarray) -> np.ndarray:
        kind = problems.kind[idx]
        key = problems.key[idx]  # type: ignore[attr-defined]
        p = np.exp(np.take_along_axis(lp, np.maximum(key, 0)[:, None], axis=1)[:, 0])
        p = np.where(key == NO_KEY, 0.0, p)
        return np.where(kind == TRAP, 0.5, p)

    def train_prob(self, problems: ProblemSet, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        return self._reward_prob(problems, idx, self.log_probs(problems, idx))

    def correct_prob(self, problems: ProblemSet, idx: np.ndarray | None = None) -> np.ndarray:
        """π(reference answer|x) per problem (hard: the hash answer)."""
        lp = self.log_probs(problems, idx)
        ans = problems.answer if idx is None else problems.answer[np.asarray(idx, np.int64)]  # type: ignore[attr-defined]
        return np.exp(np.take_along_axis(lp, ans[:, None], axis=1)[:, 0])

    def accuracy(self, heldout: ProblemSet) -> float:
        """Mean probability of the reference answer on the held-out set."""
        return float(self.correct_prob(heldout).mean())

    def abilities(self) -> list[float]:
        """Per-skill held-out accuracy (mean π(correct)) on problems that are not far
        too hard."""
        h = self.bank.heldout
        p = self.correct_prob(h)
        ok = h.kind != HARD
        return [float(p[ok & (h.skill == k)].mean()) if (ok & (h.skill == k)).any() else 0.0
                for k in range(self.n_skills)]

    # -- rollouts and the GRPO step ----------------------------------------------------

    def rollouts(self, problems: ProblemSet, idx: np.ndarray, n_rollouts: int,
                 rng: np.random.Generator) -> np.ndarray:
        """Sample G answers per problem from π_old, score them by the problem's
        verifier; rewards float [n, G]. The answers are kept for the next `step`."""
        idx = np.asarray(idx, dtype=np.int64)
        lp = self.log_probs(problems, idx)
        cdf = np.cumsum(np.exp(lp), axis=1)
        cdf /= cdf[:, -1:]
        u = rng.random((len(idx), n_rollouts))
        answers = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), self.n_answers - 1)
        key = problems.key[idx]  # type: ignore[attr-defined]
        rewards = (answers == key[:, None]).astype(np.float64)
        trap = problems.kind[idx] == TRAP
        if trap.any():
            rewards[trap] = (rng.random((int(trap.sum()), n_rollouts)) < 0.5).astype(np.float64)
        lp_old = np.take_along_axis(lp, answers, axis=1)
        self._pending = (id(problems), idx.copy(), answers, lp_old)
        return rewards

    def step(self, problems: ProblemSet, idx: np.ndarray, rewards: np.ndarray,
             rng: np.random.Generator) -> PolicyStepOutcome:
        """One GRPO step on the rollouts just sampled for (problems, idx)."""
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        rewards = np.asarray(rewards, dtype=np.float64)
        pend = self._pending
        if pend is None or pend[0] != id(problems) or not np.array_equal(pend[1], idx):
            raise RuntimeError("step() must follow rollouts() on the same problems")
        self._pending = None
        _, _, answers, lp_old_np = pend
        if rewards.shape != answers.shape:
            raise ValueError(f"rewards {rewards.shape} do not match rollouts {answers.shape}")
        p_old = np.zeros(len(idx))  # P(reward = 1) under π_old, from the first forward
        x = torch.from_numpy(problems.inputs[idx])  # type: ignore[attr-defined]
        a = torch.from_numpy(answers)
        lp_old = torch.from_numpy(lp_old_np).float()
        adv = torch.from_numpy(grpo_advantages(rewards)).float()
        eps = self.config.clip
        loss_value = 0.0
        for epoch in range(self.config.epochs):
            lp_all = torch.log_softmax(self.net(x), dim=-1)
            if epoch == 0:
                p_old = self._reward_prob(problems, idx, lp_all.detach().double().numpy())
            lp = lp_all.gather(1, a)
            ratio = torch.exp(lp - lp_old)
            loss = -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            loss_value = float(loss.detach())
        with torch.no_grad():
            lp_new_all = torch.log_softmax(self.net(x), dim=-1)
            lp_new = lp_new_all.gather(1, a).double().numpy()
        p_new = self._reward_prob(problems, idx, lp_new_all.double().numpy())
        return PolicyStepOutcome(log_ratios=lp_new - lp_old_np, p_old=p_old, p_new=p_new,
                                 loss=loss_value)


# -- scenarios ----------------------------------------------------------------------------

POLICY_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="mlp-skills",
        summary="real MLP policy, GRPO: 8 chained skills, 10% coin-flip, 5% wrong key, "
                "5% unanswerable, 10% far-too-hard, 16k problems",
        bank=PolicyBankConfig(),
        student=MLPStudentConfig(),
    ),
    Scenario(
        name="mlp-revisit",
        summary="real MLP policy, GRPO: 2k problems revisited ~13x, 5% unanswerable, "
                "10% far-too-hard",
        bank=PolicyBankConfig(n_problems=2_000, trap_share=0.0, wrong_key_share=0.0,
                              unanswerable_share=0.05),
        student=MLPStudentConfig(lr=1e-3),
    ),
)
