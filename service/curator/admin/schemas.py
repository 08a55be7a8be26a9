"""Response schemas of the admin endpoints; names say their role."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

# new: no ticket yet · training: feedback waiting for the worker · waiting: batches out,
# feedback not back yet · idle: all applied, recently active · finished: nothing for 2
# min · stale: feedback unapplied for 5 min (no worker keeping up) · revoked
RunStatus = Literal["new", "waiting", "training", "idle", "finished", "stale", "revoked"]


class QueueState(BaseModel):
    """Tickets through the feedback pipeline. `pending` = reported, not yet applied."""

    issued: int
    reported: int
    applied: int
    pending: int
    outstanding: int  # issued, feedback not yet reported by the trainer
    lag_seconds: float  # age of the oldest pending ticket (0 when none)
    last_applied_at: datetime | None
    idle_seconds: float | None = None  # since the last select or apply


class HistoryPointPublic(BaseModel):
    step: int
    model_version: int
    n_items: int
    loss: float | None
    mean_utility: float | None
    mean_reward: float | None
    entropy: float | None  # of q over the step's candidate pool, nats
    entropy_ratio: float | None  # entropy / log(pool_size)
    pool_size: int | None
    curator_share: float | None
    explore_share: float | None
    applied_at: datetime | None
    extra: dict[str, Any]
    selected_by: dict[str, float] | None = None  # share of the step's selected problems


class RunSummary(BaseModel):
    run_id: int
    name: str | None
    bank_id: int
    bank_name: str
    bank_size: int
    strategy: str
    params: dict[str, Any]
    seed: int
    step: int
    model_version: int
    revoked: bool
    created_at: datetime | None
    status: RunStatus
    queue: QueueState
    last: HistoryPointPublic | None


class RunList(BaseModel):
    runs: list[RunSummary]


class TopProblem(BaseModel):
    rank: int
    problem_id: int
    external_id: str
    prompt: str  # first 280 characters
    metadata: dict[str, Any]
    score: float  # the strategy's logit z(x)
    probability: float  # q(x) over the scored set


class GroupMass(BaseModel):
    value: str
    mass: float  # curator probability mass on the group
    count: int  # scored problems in the group
    uniform: float  # count / n_scored: the mass a uniform curator would give


class MassBy(BaseModel):
    field: str
    groups: list[GroupMass]


class ScoreHistogram(BaseModel):
    edges: list[float]
    counts: list[int]
    mass: list[float]


class ScoreStats(BaseModel):
    min: float
    max: float
    mean: float
    std: float


class DistributionPublic(BaseModel):
    run_id: int
    strategy: str
    model_version: int
    active: bool  # False: warm-up or a uniform strategy, q is uniform
    temperature: float
    top_p: float
    bank_size: int
    n_scored: int
    sampled: bool  # True when a uniform sample of the bank was scored, not all of it
    entropy: float | None  # nats
    max_entropy: float | None  # log(n_scored)
    entropy_ratio: float | None
    effective_support: float | None  # exp(entropy)
    effective_share: float | None  # effective_support / n_scored
    top: list[TopProblem]
    mass_by: MassBy | None
    fields: list[str]  # metadata fields seen in the scored set (values for `by`)
    scores: ScoreStats | None
    histogram: ScoreHistogram | None
    queue: QueueState


class HistoryPage(BaseModel):
    run_id: int
    by: str | None
    values: list[str]  # `selected_by` keys, largest overall share first
    points: list[HistoryPointPublic]
    total: int
    next_after: int | None  # pass as `after` for the next page; null on the last page


class RunComparison(BaseModel):
    run: RunSummary
    distribution: DistributionPublic
    history: HistoryPage
    metrics: dict[str, list[list[float]]] = {}  # the trainer's reported numbers


class Comparison(BaseModel):
    by: str | None
    runs: list[RunComparison]


class ProblemVisit(BaseModel):
    step: int
    ticket_id: str
    model_version: int
    source: str
    logit: float
    propensity: float
    utility: float | None  # Û as the service computed it from the feedback
    utility_kind: str | None
    mean_reward: float | None
    rewards: list[float] | None


class ProblemVisits(BaseModel):
    """One problem and each time a run selected it, newest first."""

    problem_id: int
    external_id: str
    prompt: str
    answer: str | None
    metadata: dict[str, Any]
    visits: list[ProblemVisit]
