"""Data passed between the service and the pure curation algorithms.

Everything here is plain numpy / dataclasses so `curation/` can be read and tested
without a database, a web server or (except for the neural strategies) torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

Source = Literal["curator", "explore"]
UtilityKind = Literal["direct", "ratio", "abs_advantage"]


@dataclass(frozen=True)
class Pool:
    """The candidate pool of one select: M problems of one bank."""

    problem_ids: np.ndarray  # int64 [M], bank-local problem ids (positions)
    embeddings: np.ndarray  # float32 [M, d]
    categories: list[str | None] | None = None  # metadata field values, if the strategy asks


@dataclass(frozen=True)
class Observation:
    """What the worker knows about one selected problem once its feedback arrives."""

    problem_id: int
    logit: float  # z_t(x) at selection time
    propensity: float
    source: Source
    embedding: np.ndarray  # float32 [d]
    category: str | None
    utility: float | None  # raw Û(x) for this ticket (before window averaging / scaling)
    utility_kind: UtilityKind | None
    mean_reward: float | None  # mean of the G rewards, when rewards were sent
    mean_abs_advantage: float | None  # mean |A_i| of the group, when rewards were sent


@dataclass
class UpdateStats:
    """What one strategy update reports for the run's history."""

    loss: float | None = None
    mean_utility: float | None = None  # mean of the (windowed, scaled) utilities used
    mean_reward: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Strategy(Protocol):
    """A curriculum rule: scores a candidate pool and learns from feedback.

    `logits` returns one logit per candidate; the shared sampler turns them into a
    selection with `top_p` and `temperature`. `active` says whether the logits drive
    the selection yet (warm-up); logits are still recorded per item while inactive,
    because the update uses them as z_t. `explore_share` (in [0, 1]) is the share of
    each batch the sampler leaves to the uniform fill. Every strategy derives from
    `strategies/base.StrategyBase`, which gives the defaults.
    """

    name: ClassVar[str]
    category_field: str | None  # metadata field the strategy needs on Pool/Observation
    requires_rewards: bool  # True when feedback must carry per-rollout rewards
    uses_embeddings: bool  # False: Pool.embeddings may be empty ([M, 0]); saves the lookup
    top_p: float  # nucleus mass for `sampler.sample` when active
    temperature: float  # sampler temperature τ (baselines fold their own τ into logits: 1.0)
    explore_share: float  # share of a batch left to the uniform fill
    training_keys: frozenset[str]  # state keys only training reads

    def selection_copy(self) -> Strategy | None: ...

    def load_selection_state(self, state: dict[str, Any]) -> None: ...

    def logits(self, pool: Pool) -> np.ndarray: ...

    def active(self) -> bool: ...

    def update(self, batch: list[Observation]) -> UpdateStats: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
