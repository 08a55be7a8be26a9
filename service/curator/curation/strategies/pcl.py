"""`pcl` (Prompt Curriculum Learning, Gao et al. 2025): a value head predicts each
problem's pass rate from its embedding; prefer problems predicted near p = 0.5."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from curator.curation.scorer import PassRateHead, fit_pass_rate, resolve_device
from curator.curation.stats import N_CATEGORY_FEATURES, N_FEATURES, CategoryStats, RunStats
from curator.curation.strategies.base import (
    StrategyBase,
    base_extra,
    check_sampling,
    check_state_name,
    derive_seed,
    mean_or_none,
    require,
)
from curator.curation.strategies.torchstate import (
    arrays_to_tensors,
    embeddings_tensor,
    load_optimizer_state,
    module_state,
    optimizer_state,
    tensors_to_arrays,
)
from curator.curation.types import Observation, Pool, UpdateStats

SCORE_EPS = 1e-6


def pcl_score(p: np.ndarray) -> np.ndarray:
    """2√(p(1−p)): 1 at p = 0.5, 0 at p ∈ {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return 2.0 * np.sqrt(p * (1.0 - p))


class PclStrategy(StrategyBase):
    """Value head trained online by MSE on each problem's observed mean reward (`steps`
    full-batch Adam steps per update); logits = log(2√(p(1−p)) + 1e-6) / temperature.

    temperature 0.1 (folded into the logits; sampler temperature 1) approximates PCL's
    pick-the-nearest-to-0.5 while staying a proper distribution with propensities.
    """

    name: ClassVar[str] = "pcl"
    training_keys: ClassVar[frozenset[str]] = frozenset({"optimizer"})  # see actor_curator

    @dataclass(frozen=True)
    class Params:
        hidden: int = 256
        lr: float = 1e-3
        steps: int = 4
        temperature: float = 0.1
        top_p: float = 1.0
        stats: bool = False  # the run statistics actor_curator reads, as extra inputs
        regions: int = 32
        stats_half_life: float = 10.0
        # a metadata field whose per-value statistics (recent pass rate, ...) are extra
        # inputs of the value head, as sec reads its field; "" = none
        field: str = ""

        def validate(self) -> None:
            require(1 <= self.hidden <= 8192, "hidden", "must be in [1, 8192]")
            require(self.lr > 0, "lr", "must be > 0")
            require(1 <= self.steps <= 100, "steps", "must be in [1, 100]")
            require(1 <= self.regions <= 4096, "regions", "must be in [1, 4096]")
            require(self.stats_half_life > 0, "stats_half_life", "must be > 0")
            check_sampling(self.top_p, self.temperature)

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = params.field or None
        self.requires_rewards = True
        self.uses_embeddings = True
        self.top_p = params.top_p
        self.temperature = 1.0
        self.dim = dim
        self.device = resolve_device(device)
        gen = torch.Generator().manual_seed(derive_seed(seed, 2))
        n_in = (dim + (N_FEATURES if params.stats else 0)
                + (N_CATEGORY_FEATURES if params.field else 0))
        self._head = PassRateHead(n_in, params.hidden, generator=gen).to(self.device)
        self._stats = RunStats(dim, params.regions, params.stats_half_life)
        self._cats = CategoryStats(params.stats_half_life)
        self._opt = torch.optim.Adam(self._head.parameters(), lr=params.lr)
        self._updates = 0

    def _inputs(self, problem_ids: np.ndarray, embeddings: np.ndarray,
                categories: list[str | None] | None = None) -> torch.Tensor:
        emb = np.asarray(embeddings, dtype=np.float32)
        embeddings_tensor(emb, self.dim, self.device)  # validates the shape
        parts = [emb]
        if self.params.stats:
            parts.append(self._stats.features(problem_ids, emb))
        if self.params.field:
            parts.append(self._cats.features(categories, len(emb)))
        x = np.concatenate(parts, axis=1) if len(parts) > 1 else emb
        return embeddings_tensor(x, x.shape[1], self.device)

    def predict(self, embeddings: np.ndarray, problem_ids: np.ndarray | None = None,
                categories: list[str | None] | None = None) -> np.ndarray:
        """Predicted pass rates for embeddings [M, d] (of `problem_ids` and with
        `categories`, for the statistics inputs)."""
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.float64)
        if problem_ids is None:
            problem_ids = np.full(len(embeddings), -1, dtype=np.int64)
        emb = self._inputs(np.asarray(problem_ids), embeddings, categories)
        self._head.eval()
        with torch.no_grad():
            return self._head(emb).double().cpu().numpy()

    def logits(self, pool: Pool) -> np.ndarray:
        p = self.predict(pool.embeddings, np.asarray(pool.problem_ids), pool.categories)
        return np.log(pcl_score(p) + SCORE_EPS) / self.params.temperature

    def active(self) -> bool:
        return True

    def update(self, batch: list[Observation]) -> UpdateStats:
        used = [o for o in batch if o.mean_reward is not None and math.isfinite(o.mean_reward)]
        loss_value = None
        if used:
            emb = self._inputs(np.array([o.problem_id for o in used], dtype=np.int64),
                               np.stack([np.asarray(o.embedding) for o in used]),
                               [o.category for o in used])
            target = torch.tensor(
                [o.mean_reward for o in used], dtype=torch.float32, device=self.device
            )
            loss_value = fit_pass_rate(self._head, self._opt, emb, target, self.params.steps)
        if self.params.stats:
            self._stats.push(batch)
        if self.params.field:
            self._cats.push(batch, np.full(len(batch), np.nan))
        self._updates += 1
        return UpdateStats(
            loss=loss_value,
            mean_reward=mean_or_none(o.mean_reward for o in batch),
            extra=base_extra(batch, self._updates),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "hidden": self.params.hidden,
            "updates": self._updates,
            "model": module_state(self._head),
            "stats_on": self.params.stats,
            "run_stats": arrays_to_tensors(self._stats.state_dict()),
            "field": self.params.field,
            "category_stats": arrays_to_tensors(self._cats.state_dict()),
            "optimizer": optimizer_state(self._opt),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_selection_state(state)
        load_optimizer_state(self._opt, state["optimizer"])

    def load_selection_state(self, state: dict[str, Any]) -> None:
        """Everything but the optimiser: enough to score, not to update."""
        check_state_name(state, self.name)
        if (state["dim"], state["hidden"], state.get("stats_on", False),
                state.get("field", "")) != (self.dim, self.params.hidden, self.params.stats,
                                            self.params.field):
            raise ValueError("state does not match this value head's dim/hidden/stats/field")
        self._head.load_state_dict(state["model"])
        if "run_stats" in state:
            self._stats.load_state_dict(tensors_to_arrays(state["run_stats"]))
        if "category_stats" in state:
            self._cats.load_state_dict(tensors_to_arrays(state["category_stats"]))
        self._updates = int(state["updates"])
