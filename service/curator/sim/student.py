"""Synthetic student: per-skill abilities learned by a GRPO-like rule (DESIGN §6).

Model
-----
The student holds an ability a_k per skill (a logit) and, for training problems it has
practised, a per-problem memorisation offset m_x. A problem's solve logit is

    θ_x = a_k − d_x + m_x,   P(solve x) = σ(θ_x)          (normal and hard problems)
    P(reward = 1) = 0.5 whatever the policy                  (traps: a coin flip)

Held-out problems have m = 0: what is memorised does not generalise, only a_k does.

A training step (one batch of n problems, G rollouts each) is plain GRPO on this
Bernoulli policy:

* Advantages A_i = (r_i − r̄)/(std r + 1e-6) (population std, as the service computes).
* The policy-gradient of the group on its logit is g_x = (1/G) Σ_i A_i ∂log π(r_i)/∂θ
  = (1/G) Σ_i A_i (r_i − p_x) = var r / (std r + ε) ≈ std r: zero when all rewards are
  equal (no signal), largest at p ≈ 0.5, and in expectation shaped like √(p(1−p)) — the
  logistic model's gradient magnitude (p(1−p) would be the unnormalised Dr.GRPO form).
* Generalisation: the skills' ability step is a batch-mean (the loss is averaged over
  the batch, so zero-signal groups dilute it, as in any fixed-batch GRPO trainer):

      G_k = (1/n) [ Σ_{x∈k, not trap} g_x − trap_harm · Σ_{x∈k, trap} g_x ]
      Δa  = lr · λ ⊙ (S · G)

  S is a fixed skill-similarity matrix: skills sit on a ring and S_kj = transfer^dist(k,j)
  (neighbours 0.3, two apart 0.09, ...). λ_k ~ LogNormal(0, skill_lr_spread²) is how
  readily the student learns skill k (drawn with the student; some topics simply move
  faster under RL than others).
* Memorisation: the practised problem's own logit also moves,
  Δm_x = lr · λ_k · memorisation · g_x / n (its own answers are reinforced
  `memorisation` times as strongly as the skill generalises from one problem).
* Traps: the coin-flip reward carries no information, yet the group still has signal
  (std ≈ 0.5) and the update reinforces whatever answers happened to be rewarded: the
  student memorises noise. That gradient projects *against* the skill's real ability
  (fitting wrong answers as if right interferes with the skill): −trap_harm · g_x in
  G_k, spread to related skills through S like any update.

Log-ratios (what the trainer reports so the service can compute Û = mean A_i·s_i):

* normal/hard rollout i: s_i = log(p_new/p_old) if solved, log((1−p_new)/(1−p_old))
  if not, from the true solve probabilities before and after the step (both skill
  progress and memorisation show up here, positively or negatively).
* trap rollout i: memorisation of the sampled answers only, first order:
  s_i = c·g_x·(r_i − r̄) with c = lr·λ_k·memorisation/n (the same own-problem step a
  normal problem gets), so Û(trap) ≈ c·var r > 0 — small (no skill progress behind
  it) but not zero.
* every rollout: + N(0, (logratio_noise · lr/n)²): every update perturbs every
  sequence's probability a little for reasons unrelated to that problem.

What Û sees. For a normal problem Û(x) ≈ std(r)·Δθ_x, and Δθ_x is mostly the step of
x's whole skill — made by every selected problem of that skill and its neighbours, not by
x alone. Like a real LLM's log-ratios, Û credits a problem with what the whole batch did
to it; so a curriculum that selects a skill more sees larger Û for that skill (a
feedback loop a curator must resist). The simulator keeps this on purpose. Measured
under uniform selection with the defaults: mean Û of problems with signal ≈ 0.009, of
traps ≈ 0.003 (a third), of problems without signal exactly 0.

Outcome-level (not token-level) log-ratios make Û larger than a real LLM's
length-normalised ratios; the service multiplies Û by a fixed amplifier and the curator
is trained with Adam and gradient clipping, so only relative sizes matter (amplifier 10
and 1000 give the same curves).

Defaults and why (fixed before any strategy comparison; `lr` calibrated on `uniform`
only — see bench/sim_defaults.md):

* lr = 0.3: uniform selection gains ~20 accuracy points (≈0.35 → ≈0.57) in 150 steps
  of 64 problems and is still rising; the ceiling (≈0.89: held-out far-too-hard
  problems stay unsolved) is far above, so the curve does not saturate.
* transfer = 0.3, memorisation = 3: moderate generalisation to related skills and a
  visit's own effect a few times one problem's share of the skill step.
* trap_harm = 0.3: a trap group costs its skill 30% of what an equally "active" useful
  group teaches it.
* skill_lr_spread = 0.3: skills' learning rates within about ×0.55–×1.8 (±2σ).
* logratio_noise = 1: per-rollout noise of the size of one problem's share of a step.
* initial abilities ~ N(0, 0.75²) against difficulties ~ N(1, 2.5²) (bank.py): 30–40%
  initial held-out accuracy and ~40% of groups without any signal under uniform
  selection — the order reported for open math sets with G = 8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from curator.sim.bank import TRAP, ProblemSet

ADV_EPS = 1e-6


@dataclass(frozen=True)
class StudentConfig:
    init_ability_mean: float = 0.0
    init_ability_std: float = 0.75
    lr: float = 0.3
    transfer: float = 0.3
    skill_lr_spread: float = 0.3
    memorisation: float = 3.0
    trap_harm: float = 0.3
    logratio_noise: float = 1.0

    def validate(self) -> None:
        if self.lr < 0 or self.memorisation < 0 or self.trap_harm < 0:
            raise ValueError("lr, memorisation and trap_harm must be ≥ 0")
        if not 0 <= self.transfer < 1:
            raise ValueError("transfer must be in [0, 1)")
        if self.skill_lr_spread < 0 or self.logratio_noise < 0 or self.init_ability_std < 0:
            raise ValueError("spreads and noise levels must be ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x), stable for large |x|."""
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def similarity_matrix(n_skills: int, transfer: float) -> np.ndarray:
    """S_kj = transfer^(ring distance between k and j); S_kk = 1."""
    k = np.arange(n_skills)
    d = np.abs(k[:, None] - k[None, :])
    d = np.minimum(d, n_skills - d)
    return np.where(d == 0, 1.0, transfer ** d.astype(np.float64))


def grpo_advantages(rewards: np.ndarray) -> np.ndarray:
    """Per-group A_i = (r_i − mean)/(std + 1e-6) along the last axis (population std)."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r - r.mean(axis=-1, keepdims=True)) / (r.std(axis=-1, keepdims=True) + ADV_EPS)


def group_gradient(rewards: np.ndarray) -> np.ndarray:
    """g_x = mean_i A_i (r_i − p_x) for each group; equals var/(std+ε) for any p_x."""
    r = np.asarray(rewards, dtype=np.float64)
    a = grpo_advantages(r)
    return (a * (r - r.mean(axis=-1, keepdims=True))).mean(axis=-1)


def outcome_log_ratios(rewards: np.ndarray, logit_old: np.ndarray,
                       logit_new: np.ndarray) -> np.ndarray:
    """s_i = log π_new(answer_i)/π_old(answer_i) for a Bernoulli policy with solve logit
    θ: log(p_new/p_old) for a solved rollout, log((1−p_new)/(1−p_old)) otherwise.

    rewards [n, G] in {0, 1}; logits [n]. Computed in log-sigmoid form (stable when p is
    ~0 or ~1)."""
    r = np.asarray(rewards, dtype=np.float64)
    t0 = np.asarray(logit_old, dtype=np.float64)[:, None]
    t1 = np.asarray(logit_new, dtype=np.float64)[:, None]
    solved = log_sigmoid(t1) - log_sigmoid(t0)
    failed = log_sigmoid(-t1) - log_sigmoid(-t0)
    return np.where(r > 0.5, solved, failed)


@dataclass
class StepOutcome:
    """What one training step did (arrays over the step's n problems)."""

    log_ratios: np.ndarray  # [n, G]
    p_old: np.ndarray  # [n] reward probability before the step
    p_new: np.ndarray  # [n] after (traps: 0.5)
    grad: np.ndarray  # [n] g_x
    delta_ability: np.ndarray  # [K]


class Student:
    """Abilities per skill + memorisation per training problem; see the module doc."""

    def __init__(self, config: StudentConfig, n_skills: int, n_train: int, seed: int) -> None:
        config.validate()
        self.config = config
        rng = np.random.default_rng([seed, 0x57D])
        self.ability = rng.normal(config.init_ability_mean, config.init_ability_std, n_skills)
        self.skill_lr = np.exp(rng.normal(0.0, config.skill_lr_spread, n_skills))
        self.memo = np.zeros(n_train)
        self.similarity = similarity_matrix(n_skills, config.transfer)

    @property
    def n_skills(self) -> int:
        return len(self.ability)

    # -- probabilities --------------------------------------------------------------

    def logits(self, problems: ProblemSet, idx: np.ndarray | None = None,
               memo: np.ndarray | None = None) -> np.ndarray:
        """Solve logits θ (traps: their nominal difficulty, unused for rewards)."""
        if idx is None:
            idx = np.arange(len(problems))
        th = self.ability[problems.skill[idx]] - problems.difficulty[idx]
        if memo is not None:
            th = th + memo[idx]
        return th

    def reward_prob(self, problems: ProblemSet, idx: np.ndarray | None = None,
                    memo: np.ndarray | None = None) -> np.ndarray:
        """P(reward = 1): σ(θ) for normal/hard problems, 0.5 for traps."""
        if idx is None:
            idx = np.arange(len(problems))
        p = sigmoid(self.logits(problems, idx, memo))
        return np.where(problems.kind[idx] == TRAP, 0.5, p)

    def train_prob(self, problems: ProblemSet, idx: np.ndarray) -> np.ndarray:
        return self.reward_prob(problems, idx, self.memo)

    def accuracy(self, heldout: ProblemSet) -> float:
        """Expected held-out accuracy: mean P(solve) (no memorisation; no traps)."""
        keep = heldout.kind != TRAP
        return float(sigmoid(self.logits(heldout)[keep]).mean())

    def rollouts(self, problems: ProblemSet, idx: np.ndarray, n_rollouts: int,
                 rng: np.random.Generator) -> np.ndarray:
        """G Bernoulli rewards per problem, float [n, G]."""
        p = self.train_prob(problems, idx)
        return (rng.random((len(idx), n_rollouts)) < p[:, None]).astype(np.float64)

    # -- learning -------------------------------------------------------------------

    def step(self, problems: ProblemSet, idx: np.ndarray, rewards: np.ndarray,
             rng: np.random.Generator) -> StepOutcome:
        """Apply one GRPO step on the batch (idx, rewards) and return the log-ratios."""
        cfg = self.config
        idx = np.asarray(idx, dtype=np.int64)
        rewards = np.asarray(rewards, dtype=np.float64)
        n = len(idx)
        if n == 0:
            k = self.n_skills
            return StepOutcome(np.zeros((0, rewards.shape[-1] if rewards.ndim == 2 else 0)),
                               np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(k))
        trap = problems.kind[idx] == TRAP
        skill = problems.skill[idx]
        g = group_gradient(rewards)
        p_old = self.train_prob(problems, idx)
        th_old = self.logits(problems, idx, self.memo)

        signed = np.where(trap, -cfg.trap_harm * g, g)
        grad_k = np.bincount(skill, weights=signed, minlength=self.n_skills) / n
        delta = cfg.lr * self.skill_lr * (self.similarity @ grad_k)
        self.ability = self.ability + delta

        own = cfg.lr * self.skill_lr[skill] * cfg.memorisation * g / n
        normal = ~trap
        # a problem can appear once per ticket; np.add.at keeps repeats correct anyway
        np.add.at(self.memo, idx[normal], own[normal])
        th_new = self.logits(problems, idx, self.memo)
        p_new = self.train_prob(problems, idx)

        s = outcome_log_ratios(rewards, th_old, th_new)
        centred = rewards - rewards.mean(axis=1, keepdims=True)
        s_trap = own[:, None] * centred
        s = np.where(trap[:, None], s_trap, s)
        if cfg.logratio_noise > 0:
            s = s + rng.normal(0.0, cfg.logratio_noise * cfg.lr / n, size=s.shape)
        return StepOutcome(log_ratios=s, p_old=p_old, p_new=p_new, grad=g,
                           delta_ability=delta)


def realised_improvement(rewards: np.ndarray, log_ratios: np.ndarray) -> np.ndarray:
    """Û per group = mean_i A_i·exp(s_i), the quantity the service computes (for
    diagnostics and tests; the trainer sends rewards and log-ratios, not Û)."""
    return (grpo_advantages(rewards) * np.exp(log_ratios)).mean(axis=-1)
