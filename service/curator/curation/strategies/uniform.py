"""`uniform`: the shuffled pass over the bank, the control every curriculum must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from curator.curation.strategies.base import (
    StrategyBase,
    base_extra,
    check_state_name,
    mean_or_none,
)
from curator.curation.types import Observation, Pool, UpdateStats


class UniformStrategy(StrategyBase):
    """Never active: the service samples the pool uniformly (sampler logits=None)."""

    name: ClassVar[str] = "uniform"

    @dataclass(frozen=True)
    class Params:
        def validate(self) -> None:
            pass

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = None
        self.requires_rewards = False
        self.uses_embeddings = False  # scores from ids/categories: no vector lookup
        self.top_p = 1.0
        self.temperature = 1.0
        self._updates = 0

    def logits(self, pool: Pool) -> np.ndarray:
        return np.zeros(len(pool.problem_ids), dtype=np.float64)

    def active(self) -> bool:
        return False

    def update(self, batch: list[Observation]) -> UpdateStats:
        self._updates += 1
        return UpdateStats(
            mean_reward=mean_or_none(o.mean_reward for o in batch),
            extra=base_extra(batch, self._updates),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "updates": self._updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_name(state, self.name)
        self._updates = int(state["updates"])
