"""`mopps` (Model Predictive Prompt Selection, Qu et al. 2025, arXiv 2507.04632): a Beta
posterior on each problem's pass rate, Thompson-sampled, preferring problems whose sampled
pass rate is nearest a target (0.5)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from curator.curation.strategies.base import (
    StrategyBase,
    base_extra,
    check_state_name,
    derive_seed,
    mean_or_none,
    require,
)
from curator.curation.types import Observation, Pool, UpdateStats

NOISE_SALT = 3  # derive_seed stream of the Thompson draws (pcl's head init uses 2)
DEFAULT_CAPACITY = 32_768  # posterior records (1 MB), as curation/stats.py keeps
MAX_CAPACITY = 1 << 20  # 32 MB of posterior records at most


def pool_digest(problem_ids: np.ndarray) -> int:
    """A 64-bit digest of a pool's problem ids (in order), part of the Thompson draw's key."""
    data = np.ascontiguousarray(np.asarray(problem_ids, dtype="<i8")).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class MoppsStrategy(StrategyBase):
    """Per-problem Beta(α, β) posterior on the pass rate; logit = −sharpness·|p̃ − target|
    with p̃ ~ Beta(α, β) drawn afresh for every model version and pool.

    *Update* (the authors' streaming Bayesian update with forgetting), for each observed
    problem with mean reward r̄ (clipped to [0, 1]):

        α ← λ·α + (1 − λ)·α₀ + G·r̄,    β ← λ·β + (1 − λ)·β₀ + G·(1 − r̄)

    λ = `decay`, (α₀, β₀) = (`prior_alpha`, `prior_beta`), applied only when the problem is
    observed (as in the authors' code; an unvisited posterior stays as it was). An
    unseen problem starts at the prior. `Observation` carries the group's mean reward, not
    its size G, so G is the parameter `group_size` (default 8, the paper's rollouts per
    prompt): set it to the trainer's G for the exact Beta–Binomial update. Each group then
    counts as G·r̄ successes and G·(1 − r̄) failures — fractional when the rewards are not
    0/1 (the usual fractional-Bernoulli extension).

    *Forgetting.* The authors' released config (verl recipe/mopps, `bandit_decay_ratio`)
    defaults to λ = 1, no forgetting, and its scripts keep it. Here the default
    is 0.5: a problem of a bank comes back about once per pass over the bank, many policy
    updates later, so its previous visit should count as much as everything before it
    together — the posterior follows the student instead of averaging its whole history.

    *Selection.* The paper takes the top B of the pool by |p̃ − target|. The shared sampler
    draws B without replacement from softmax(logits) (Gumbel-top-k), so logits
    −sharpness·|p̃ − target| with a large `sharpness` approximate that top-B while keeping
    a proper distribution with propensities. Default 100: a 0.01 difference in sampled
    distance is a factor e in probability, so the draw is the paper's top-B up to a
    boundary about 0.01 wide (under an uninformed posterior the top-B boundary of a pool
    4–16× the batch lies at distance 0.03–0.125): drawing 8 of 64 under the prior, 90% of
    the draw is the top 8 (sharpness 50: 82%, 10: 42%, 1000: 99%); the randomness left is
    the Thompson draw's, as in MoPPS. Logits lie in [−sharpness, 0]. The sampler's
    temperature is 1 and `top_p` 1.0 (no uniform fill).

    *The Thompson draw* is a pure function of the strategy's state and the pool: its
    generator is keyed by (noise seed, update count, digest of the pool's ids). The
    service scores one version on several copies — the training copy prescores the next
    pool before its checkpoint is written, the API's selection copy scores inline when the
    prescored pool does not match, admin views score the bank — and relies on a version's
    logits for a pool being the same wherever they are computed (selection/prescore.py). A
    generator advanced by each call would make the checkpoint depend on whether a prescore
    ran, and a replica's draws differ from the in-process ones. So: deterministic given
    the seed and the sequence of updates, identical after state_dict/load_state_dict (the
    noise seed is in the state), a fresh draw at every update (every new version), and a
    different draw for every different pool. The logged propensity q(x) is conditional on
    that draw, which a replay recomputes exactly.

    Posteriors live in at most `capacity` records; when a new problem needs one and all
    are taken, the least recently observed problem's is dropped (it reads as the prior
    again), so memory and the checkpoint written after every update stay bounded.
    """

    name: ClassVar[str] = "mopps"

    @dataclass(frozen=True)
    class Params:
        target: float = 0.5
        prior_alpha: float = 1.0
        prior_beta: float = 1.0
        decay: float = 0.5
        group_size: float = 8.0
        sharpness: float = 100.0
        top_p: float = 1.0
        dormant_steps: int = 0
        capacity: int = DEFAULT_CAPACITY

        def validate(self) -> None:
            require(0 <= self.target <= 1, "target", "must be in [0, 1]")
            require(0 < self.prior_alpha <= 1e6, "prior_alpha", "must be in (0, 1e6]")
            require(0 < self.prior_beta <= 1e6, "prior_beta", "must be in (0, 1e6]")
            require(0 <= self.decay <= 1, "decay", "must be in [0, 1]")
            require(0 < self.group_size <= 1e6, "group_size", "must be in (0, 1e6]")
            require(0 < self.sharpness <= 1e4, "sharpness", "must be in (0, 1e4]")
            require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
            require(self.dormant_steps >= 0, "dormant_steps", "must be >= 0")
            require(1 <= self.capacity <= MAX_CAPACITY, "capacity",
                    f"must be in [1, {MAX_CAPACITY}]")

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = None
        self.requires_rewards = True
        self.uses_embeddings = False  # scores from ids: no vector lookup
        self.top_p = params.top_p
        self.temperature = 1.0
        self._noise_seed = derive_seed(seed, NOISE_SALT)
        # problem id → (α, β), least recently observed first (re-inserted on each update)
        self._post: dict[int, tuple[float, float]] = {}
        self._updates = 0

    def __len__(self) -> int:
        return len(self._post)

    def posterior(self, problem_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) per problem, float64; the prior for problems without a record."""
        prior = (self.params.prior_alpha, self.params.prior_beta)
        ab = np.array([self._post.get(int(i), prior) for i in np.asarray(problem_ids)],
                      dtype=np.float64).reshape(-1, 2)
        return ab[:, 0].copy(), ab[:, 1].copy()

    def sample_pass_rates(self, problem_ids: np.ndarray) -> np.ndarray:
        """The Thompson draw p̃ ~ Beta(α, β) for these candidates (see the class doc)."""
        ids = np.asarray(problem_ids, dtype=np.int64)
        a, b = self.posterior(ids)
        rng = np.random.default_rng([self._noise_seed, self._updates, pool_digest(ids)])
        return rng.beta(a, b)

    def logits(self, pool: Pool) -> np.ndarray:
        p = self.sample_pass_rates(pool.problem_ids)
        return -self.params.sharpness * np.abs(p - self.params.target)

    def active(self) -> bool:
        return self._updates >= self.params.dormant_steps

    def update(self, batch: list[Observation]) -> UpdateStats:
        prm = self.params
        lam, a0, b0, g = prm.decay, prm.prior_alpha, prm.prior_beta, prm.group_size
        for o in batch:
            r = o.mean_reward
            if r is None or not math.isfinite(r):
                continue
            r = min(max(float(r), 0.0), 1.0)
            pid = int(o.problem_id)
            prev = self._post.pop(pid, None)
            if prev is None:
                a, b = a0, b0
                if len(self._post) >= prm.capacity:  # drop the least recently observed
                    del self._post[next(iter(self._post))]
            else:
                a, b = prev
            self._post[pid] = (lam * a + (1.0 - lam) * a0 + g * r,
                               lam * b + (1.0 - lam) * b0 + g * (1.0 - r))
        self._updates += 1
        return UpdateStats(
            mean_reward=mean_or_none(o.mean_reward for o in batch),
            extra=base_extra(batch, self._updates) | {"tracked": float(len(self._post))},
        )

    def state_dict(self) -> dict[str, Any]:
        ab = np.array(list(self._post.values()), dtype=np.float64).reshape(-1, 2)
        return {
            "name": self.name,
            "updates": self._updates,
            "noise_seed": self._noise_seed,
            "ids": torch.tensor(list(self._post), dtype=torch.int64),
            "alpha": torch.from_numpy(ab[:, 0].copy()),
            "beta": torch.from_numpy(ab[:, 1].copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load `state` (the newest `capacity` records if it holds more than that)."""
        check_state_name(state, self.name)
        ids = [int(i) for i in state["ids"].tolist()]
        alpha = [float(v) for v in state["alpha"].tolist()]
        beta = [float(v) for v in state["beta"].tolist()]
        if not len(ids) == len(alpha) == len(beta):
            raise ValueError("mopps state: ids, alpha and beta differ in length")
        keep = slice(max(0, len(ids) - self.params.capacity), None)
        self._post = dict(zip(ids[keep], zip(alpha[keep], beta[keep])))
        self._noise_seed = int(state["noise_seed"])
        self._updates = int(state["updates"])
