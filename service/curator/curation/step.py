"""The algorithm's step in one place: score a candidate pool, draw a batch from it, and
turn the reported items into the observations the strategy learns from.

The service's select and its scoring ahead (selection/), the admin distribution
(admin/views.py) and the simulator's direct engine (sim/direct.py) all score and draw
through `score` and `draw`, so a pool means the same logits and a (seed, step) the same
draw wherever it is computed; the worker's apply (runs/apply.py) and the direct engine
both build their update's batch with `observations`, so what a strategy learns from one
step does not depend on which of them ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from curator.curation.sampler import Selection, sample
from curator.curation.types import Observation, Pool, Source, Strategy, UtilityKind


def score(strategy: Strategy, positions: np.ndarray,
          embed: Callable[[np.ndarray], np.ndarray],
          categories: Sequence[str | None] | None = None) -> np.ndarray:
    """The strategy's logits (float64) over the pool at `positions`. `embed(positions)`
    is called only if the strategy reads embeddings (else the pool carries [M, 0])."""
    positions = np.asarray(positions, dtype=np.int64)
    if strategy.uses_embeddings:
        embeddings = embed(positions)
    else:
        embeddings = np.zeros((positions.size, 0), dtype=np.float32)
    pool = Pool(problem_ids=positions, embeddings=embeddings, categories=categories)
    return np.asarray(strategy.logits(pool), dtype=np.float64)


def draw(logits: np.ndarray, *, seed: int, step: int, batch_size: int, pool_size: int,
         active: bool, top_p: float, temperature: float, explore: float) -> Selection:
    """Sample `batch_size` of the pool (docs/design.md, "Sampling"); the rng is keyed by
    (seed, step), so the same step draws the same problems wherever it is drawn."""
    rng = np.random.default_rng([seed, step])
    return sample(logits if active else None, batch_size, rng, pool_size=pool_size,
                  top_p=top_p, temperature=temperature, explore=explore)


class Reported(Protocol):
    """One selected item with its feedback summarised (`summarise_group`'s four values):
    a ticket item joined with its feedback row in the service, a `ReportedItem` in the
    direct engine."""

    @property
    def problem_id(self) -> int: ...
    @property
    def logit(self) -> float: ...
    @property
    def propensity(self) -> float: ...
    @property
    def source(self) -> str: ...
    @property
    def utility(self) -> float | None: ...
    @property
    def utility_kind(self) -> str | None: ...
    @property
    def mean_reward(self) -> float | None: ...
    @property
    def mean_abs_advantage(self) -> float | None: ...


@dataclass(frozen=True)
class ReportedItem:
    """A `Reported` built in memory (the direct engine has no feedback rows)."""

    problem_id: int
    logit: float
    propensity: float
    source: str
    utility: float | None
    utility_kind: str | None
    mean_reward: float | None
    mean_abs_advantage: float | None


def observations(reported: Sequence[Reported], embeddings: np.ndarray,
                 categories: Sequence[str | None] | None = None) -> list[Observation]:
    """The update's batch: one `Observation` per reported item, in order, with row i of
    `embeddings` and entry i of `categories` (None: no category field)."""
    if len(embeddings) != len(reported):
        raise ValueError(f"{len(embeddings)} embeddings for {len(reported)} items")
    if categories is not None and len(categories) != len(reported):
        raise ValueError(f"{len(categories)} categories for {len(reported)} items")
    out = []
    for i, r in enumerate(reported):
        source: Source = r.source  # type: ignore[assignment]  # "curator" | "explore"
        kind: UtilityKind | None = r.utility_kind  # type: ignore[assignment]
        out.append(Observation(
            problem_id=int(r.problem_id), logit=float(r.logit),
            propensity=float(r.propensity), source=source, embedding=embeddings[i],
            category=None if categories is None else categories[i], utility=r.utility,
            utility_kind=kind, mean_reward=r.mean_reward,
            mean_abs_advantage=r.mean_abs_advantage))
    return out
