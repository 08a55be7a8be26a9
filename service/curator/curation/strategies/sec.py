"""`sec` (Self-Evolving Curriculum, Chen et al. 2025, arXiv 2505.14970): a Boltzmann
bandit over the categories of a metadata field, rewarded by mean |advantage|."""

from __future__ import annotations

import math
from collections import Counter
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

NONE_CATEGORY = "__none__"


def _category(value: str | None) -> str:
    return NONE_CATEGORY if value is None else str(value)


class SecStrategy(StrategyBase):
    """Q(c) ← α·r_t(c) + (1−α)·Q(c), r_t(c) = mean over the batch's problems of category c
    of their mean |A|; unseen Q = 0.

    Candidate logit = Q(c)/τ − log(count of c in the pool), so the pool's mass per
    category is ∝ exp(Q(c)/τ) (over the categories present) and uniform within it. τ
    is folded into the logits (sampler temperature 1). Default τ = 0.2: Q lives in
    [0, ~1], so 0.2 turns a 0.2 gap in mean |A| into a factor e between arms — sharp
    enough to follow the signal, soft enough to keep visiting every arm (our choice;
    the paper tunes it per task). Category values are compared as strings; a missing
    value (or `pool.categories` None) is the arm "__none__".
    """

    name: ClassVar[str] = "sec"

    @dataclass(frozen=True)
    class Params:
        field: str = "difficulty"
        alpha: float = 0.5
        temperature: float = 0.2
        top_p: float = 1.0

        def validate(self) -> None:
            require(0 < self.alpha <= 1, "alpha", "must be in (0, 1]")
            check_sampling(self.top_p, self.temperature)

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = params.field
        self.requires_rewards = True
        self.uses_embeddings = False  # scores from ids/categories: no vector lookup
        self.top_p = params.top_p
        self.temperature = 1.0
        self.q: dict[str, float] = {}
        self._updates = 0

    def logits(self, pool: Pool) -> np.ndarray:
        n = len(pool.problem_ids)
        cats = [_category(c) for c in (pool.categories or [None] * n)]
        if len(cats) != n:
            raise ValueError("pool.categories must have one entry per candidate")
        counts = Counter(cats)
        tau = self.params.temperature
        return np.array(
            [self.q.get(c, 0.0) / tau - math.log(counts[c]) for c in cats], dtype=np.float64
        )

    def active(self) -> bool:
        return True

    def update(self, batch: list[Observation]) -> UpdateStats:
        per_cat: dict[str, list[float]] = {}
        for o in batch:
            v = o.mean_abs_advantage
            if v is not None and math.isfinite(v):
                per_cat.setdefault(_category(o.category), []).append(v)
        a = self.params.alpha
        for c, vals in per_cat.items():
            r = sum(vals) / len(vals)
            self.q[c] = a * r + (1 - a) * self.q.get(c, 0.0)
        self._updates += 1
        return UpdateStats(
            mean_reward=mean_or_none(o.mean_reward for o in batch),
            extra=base_extra(batch, self._updates) | {"arms": float(len(self.q))},
        )

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "updates": self._updates, "q": dict(self.q)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_name(state, self.name)
        self.q = {str(k): float(v) for k, v in state["q"].items()}
        self._updates = int(state["updates"])
