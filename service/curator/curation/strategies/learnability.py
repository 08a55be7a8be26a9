"""`learnability` (Foster & Foerster 2025, SFL): prefer problems the policy solves about
half the time, score p(1−p) on a per-problem pass-rate estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from curator.curation.strategies.base import (
    StrategyBase,
    base_extra,
    check_sampling,
    check_state_name,
    mean_or_none,
    require,
)
from curator.curation.types import Observation, Pool, UpdateStats

SCORE_EPS = 1e-6


class LearnabilityStrategy(StrategyBase):
    """Per-problem EMA pass rate p; logits = log(p(1−p) + 1e-6) / temperature.

    A problem's first observation sets p to its mean reward (SFL's empirical pass rate;
    starting the EMA from the prior would keep a solved problem near the top for many
    visits); later ones update p ← α·r̄ + (1−α)·p. Unseen problems use `prior`. The
    sampler's own temperature is 1 (the parameter is folded into the logits) and
    top_p = 1.0 samples ∝ score^(1/temperature) with no uniform floor.
    """

    name: ClassVar[str] = "learnability"

    @dataclass(frozen=True)
    class Params:
        alpha: float = 0.3
        prior: float = 0.5
        temperature: float = 1.0
        top_p: float = 1.0

        def validate(self) -> None:
            require(0 < self.alpha <= 1, "alpha", "must be in (0, 1]")
            require(0 <= self.prior <= 1, "prior", "must be in [0, 1]")
            check_sampling(self.top_p, self.temperature)

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = None
        self.requires_rewards = True
        self.uses_embeddings = False  # scores from ids/categories: no vector lookup
        self.top_p = params.top_p
        self.temperature = 1.0
        self._p: dict[int, float] = {}
        self._updates = 0

    def pass_rates(self, problem_ids: np.ndarray) -> np.ndarray:
        prior = self.params.prior
        return np.array([self._p.get(int(i), prior) for i in problem_ids], dtype=np.float64)

    def logits(self, pool: Pool) -> np.ndarray:
        # clipped as pcl's: rewards outside [0, 1] (a trainer's own scale) must not make
        # p(1 − p) negative, whose log would poison every select of the run
        p = np.clip(self.pass_rates(pool.problem_ids), 0.0, 1.0)
        return np.log(p * (1.0 - p) + SCORE_EPS) / self.params.temperature

    def active(self) -> bool:
        return True

    def update(self, batch: list[Observation]) -> UpdateStats:
        a = self.params.alpha
        for o in batch:
            r = o.mean_reward
            if r is None or not math.isfinite(r):
                continue
            prev = self._p.get(o.problem_id)
            self._p[o.problem_id] = r if prev is None else a * r + (1 - a) * prev
        self._updates += 1
        return UpdateStats(
            mean_reward=mean_or_none(o.mean_reward for o in batch),
            extra=base_extra(batch, self._updates) | {"tracked": float(len(self._p))},
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "updates": self._updates,
            "ids": list(self._p),
            "pass_rates": list(self._p.values()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_name(state, self.name)
        self._p = {int(i): float(v) for i, v in zip(state["ids"], state["pass_rates"], strict=True)}
        self._updates = int(state["updates"])
