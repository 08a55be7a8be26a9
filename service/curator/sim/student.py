"""Synthetic student: per-skill abilities learned by a GRPO-like rule (docs/design.md §5).

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

Structural variants (scenarios.py; every default below reproduces the model above)
--------------------------------------------------------------------------------

* `topology` — "ring" (above) or "chain": skills form a prerequisite chain 0 → 1 → …
  → K−1. Transfer is by chain distance (S_kj = transfer^|k−j|, no wrap-around), and
  skill k's whole ability step (its own gradient and what it receives through S) is
  multiplied by a gate computed from the *current* ability of its prerequisite,

      gate_k = σ(gate_slope · (a_{k−1} − gate_threshold)),   gate_0 = 1,

  so a later skill barely moves until the one before it is learned: early in a run only
  the first skills learn, and the frontier moves along the chain as they are mastered.
  Memorisation is not gated (an answer can be memorised without understanding it).
* `init_ability_step` (default 0) — skill k's initial mean ability is
  init_ability_mean + k · init_ability_step (negative: later skills start weaker, as
  advanced topics do).
* `forgetting` (default 0) — capacity decay. At every step, before the update, every
  ability slides back toward its initial value, a ← a − forgetting · (a − a_init), and
  every memorisation offset decays the same way, m ← (1 − forgetting) · m. A mastered
  skill that is not practised is lost again (half-life ln 2 / forgetting steps), so a
  curriculum must revisit what it has already taught. The step's log-ratios include
  the decay (the rollouts were sampled from the policy before it).
* Unanswerable problems (bank.py, kind "unanswerable": a wrong answer key): reward 0
  whatever the policy, so their groups never have signal and never teach anything;
  their log-ratios follow the (unrewarded) policy change like any failed rollout's.

`learn_rate()` (how readily each skill learns now: λ_k · gate_k) and `answerable()` are
ground truth for reference selectors (the oracle), never for strategies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from curator.sim.bank import TRAP, UNANSWERABLE, ProblemSet, SimBank

ADV_EPS = 1e-6
TOPOLOGIES = ("ring", "chain")


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
    topology: str = "ring"  # "ring" | "chain" (prerequisite chain with gates)
    gate_threshold: float = 1.0  # chain: prerequisite ability at which the gate is half open
    gate_slope: float = 2.0  # chain: steepness of the gate (per logit of ability)
    init_ability_step: float = 0.0  # skill k starts at init_ability_mean + k · step
    forgetting: float = 0.0  # per-step decay of (a − a_init) and of memorisation

    def validate(self) -> None:
        if self.lr < 0 or self.memorisation < 0 or self.trap_harm < 0:
            raise ValueError("lr, memorisation and trap_harm must be ≥ 0")
        if not 0 <= self.transfer < 1:
            raise ValueError("transfer must be in [0, 1)")
        if self.skill_lr_spread < 0 or self.logratio_noise < 0 or self.init_ability_std < 0:
            raise ValueError("spreads and noise levels must be ≥ 0")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}")
        if self.gate_slope < 0:
            raise ValueError("gate_slope must be ≥ 0")
        if not 0 <= self.forgetting < 1:
            raise ValueError("forgetting must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, bank: SimBank, seed: int) -> Student:
        """A fresh student for `bank` drawn from `seed` (protocol.StudentSpec)."""
        return Student(self, bank.config.n_skills, len(bank.train), seed)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x), stable for large |x|."""
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def similarity_matrix(n_skills: int, transfer: float, topology: str = "ring") -> np.ndarray:
    """S_kj = transfer^(distance between k and j); S_kk = 1. Ring distance wraps around,
    chain distance (|k − j|) does not: the first and last topics of a chain are far."""
    k = np.arange(n_skills)
    d = np.abs(k[:, None] - k[None, :])
    if topology == "ring":
        d = np.minimum(d, n_skills - d)
    return np.where(d == 0, 1.0, transfer ** d.astype(np.float64))


def chain_gates(ability: np.ndarray, threshold: float, slope: float) -> np.ndarray:
    """gate_k = σ(slope·(a_{k−1} − threshold)), gate_0 = 1: how open skill k is to
    learning given how well its prerequisite is known now."""
    gates = np.ones(len(ability))
    gates[1:] = sigmoid(slope * (np.asarray(ability[:-1], dtype=np.float64) - threshold))
    return gates


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
        mean = config.init_ability_mean
        if config.init_ability_step:
            mean = mean + config.init_ability_step * np.arange(n_skills)
        self.ability = rng.normal(mean, config.init_ability_std, n_skills)
        self.skill_lr = np.exp(rng.normal(0.0, config.skill_lr_spread, n_skills))
        self.init_ability = self.ability.copy()
        self.memo = np.zeros(n_train)
        self.similarity = similarity_matrix(n_skills, config.transfer, config.topology)

    @property
    def n_skills(self) -> int:
        return len(self.ability)

    def abilities(self) -> list[float]:
        return [float(a) for a in self.ability]

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
        """P(reward = 1): σ(θ) for normal/hard problems, 0.5 for traps, 0 for
        unanswerable problems."""
        if idx is None:
            idx = np.arange(len(problems))
        p = sigmoid(self.logits(problems, idx, memo))
        kind = problems.kind[idx]
        return np.where(kind == TRAP, 0.5, np.where(kind == UNANSWERABLE, 0.0, p))

    def train_prob(self, problems: ProblemSet, idx: np.ndarray) -> np.ndarray:
        return self.reward_prob(problems, idx, self.memo)

    def accuracy(self, heldout: ProblemSet) -> float:
        """Expected held-out accuracy: mean P(solve) (no memorisation; no traps)."""
        keep = (heldout.kind != TRAP) & (heldout.kind != UNANSWERABLE)
        return float(sigmoid(self.logits(heldout)[keep]).mean())

    def gates(self) -> np.ndarray:
        """Per-skill gate on the ability step (all 1 on a ring)."""
        cfg = self.config
        if cfg.topology != "chain":
            return np.ones(self.n_skills)
        return chain_gates(self.ability, cfg.gate_threshold, cfg.gate_slope)

    def learn_rate(self) -> np.ndarray:
        """How readily each skill learns now, λ_k · gate_k (ground truth, for oracles)."""
        return self.skill_lr * self.gates()

    def answerable(self, problems: ProblemSet, idx: np.ndarray) -> np.ndarray:
        """Whether the reward of each problem can ever be 1 (ground truth, for oracles)."""
        return problems.kind[np.asarray(idx, dtype=np.int64)] != UNANSWERABLE

    def forget(self) -> None:
        """Capacity decay: abilities slide toward their initial values, memorisation
        toward zero, by the fraction `forgetting` (a no-op at the default 0)."""
        f = self.config.forgetting
        if f <= 0:
            return
        self.ability = self.ability - f * (self.ability - self.init_ability)
        self.memo *= 1.0 - f

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

        gates = self.gates() if cfg.topology == "chain" else None  # before any change
        before = self.ability
        self.forget()

        signed = np.where(trap, -cfg.trap_harm * g, g)
        grad_k = np.bincount(skill, weights=signed, minlength=self.n_skills) / n
        step_k = cfg.lr * self.skill_lr * (self.similarity @ grad_k)
        if gates is not None:
            step_k = step_k * gates
        self.ability = self.ability + step_k
        delta = self.ability - before if cfg.forgetting > 0 else step_k

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
