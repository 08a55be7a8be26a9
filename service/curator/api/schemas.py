"""Request and response schemas; names say their role. ORM models stay in db/."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from curator.runs.feedback import MAX_ABS_LOG_RATIO, MAX_ABS_REWARD, MAX_ABS_UTILITY

Finite = Annotated[float, Field(allow_inf_nan=False)]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
# Sizes and ids are strict integers: "3", 3.0 or true are refused rather than coerced.
def _whole(v: Any) -> Any:
    """119.0 is an integer in JSON Schema (and what some encoders write): accept a float
    with no fractional part where an integer is declared; strings and bools stay refused."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**63 else v


_WHOLE = BeforeValidator(_whole)
Id = Annotated[int, _WHOLE, Field(ge=0, le=2**31 - 1, strict=True)]  # INTEGER primary keys


def _finite_json(value: Any) -> Any:
    """Free-form JSON (metadata, params) must be storable and servable: no NaN/Infinity."""
    def walk(v: Any) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must not contain NaN or Infinity")
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return value


FreeJSON = Annotated[dict[str, Any], AfterValidator(_finite_json)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankCreate(_In):
    name: Name
    embedder: Literal["hash", "minilm", "provided"] = "hash"
    dim: Annotated[int, _WHOLE, Field(ge=1, le=8192, strict=True, description=(
        "required for `provided` (the vectors you will send); `minilm` is 384 (another "
        "value is refused); `hash` defaults to the server's CURATOR_HASH_EMBEDDER_DIM"))] \
        | None = None


class IndexInfo(BaseModel):
    state: Literal["ready", "stale", "missing"]
    size: int
    store_rows: int


class BankPublic(BaseModel):
    bank_id: int
    name: str
    embedder: str
    dim: int
    size: int
    index: IndexInfo | None = None


class BankList(BaseModel):
    banks: list[BankPublic]


class ProblemIn(_In):
    external_id: Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL)]
    prompt: Annotated[str, Field(min_length=1, max_length=200_000, pattern=NO_NUL)]
    answer: Annotated[str, Field(max_length=200_000, pattern=NO_NUL)] | None = None
    metadata: FreeJSON = Field(default_factory=dict)
    embedding: Annotated[list[Finite], Field(min_length=1, max_length=8192)] | None = None


class ProblemOut(BaseModel):
    problem_id: int = Field(description="the problem's position in the bank (what select "
                                        "returns and feedback names)")
    external_id: str
    prompt: str
    answer: str | None
    metadata: dict[str, Any]


class ProblemPage(BaseModel):
    problems: list[ProblemOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null "
                                               "on the last page")


class ProblemsAdd(_In):
    problems: Annotated[list[ProblemIn], Field(min_length=1)]


class ProblemsAdded(BaseModel):
    added: int
    duplicates: list[str]
    problem_ids: list[int]
    size: int


class RunCreate(_In):
    bank_id: Id
    strategy: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] = "uniform"
    params: FreeJSON = Field(default_factory=dict)
    seed: Annotated[int, _WHOLE, Field(ge=0, le=2**62, strict=True)] | None = None
    name: Name | None = None
    init_from: Id | None = Field(default=None, description=(
        "start from this run's learned curator (same strategy, embedder and dimension; "
        "not its optimiser, cursor or statistics); the run then has no dormant period "
        "unless `params` sets dormant_steps"))


class RunCreated(BaseModel):
    run_id: int
    token: str
    bank_id: int
    strategy: str
    params: dict[str, Any]
    seed: int
    name: str | None


class TicketCounts(BaseModel):
    issued: int
    reported: int  # feedback received (includes applied and failed)
    applied: int
    failed: int = 0  # set aside after repeated apply errors (dead letters)
    partial: int = Field(0, description="issued tickets holding some results, waiting for "
                                        "the rest (or a `final` post)")


class RunPublic(BaseModel):
    run_id: int
    bank_id: int
    name: str | None
    strategy: str
    params: dict[str, Any]
    seed: int
    step: int
    model_version: int
    revoked: bool
    tickets: TicketCounts
    stats: dict[str, Any]


class SelectRequest(_In):
    batch_size: Annotated[int, _WHOLE, Field(ge=1, strict=True, description=(
        "problems to draw; at most pool_size, the bank's size and the server's "
        "CURATOR_MAX_BATCH_SIZE (8192)"))]
    pool_size: Annotated[int, _WHOLE, Field(ge=1, strict=True, description=(
        "candidates scored (M); at least batch_size, at most CURATOR_MAX_POOL_SIZE "
        "(65536); default max(CURATOR_DEFAULT_POOL_SIZE, batch_size)"))] | None = None


class SelectedProblem(BaseModel):
    problem_id: int
    external_id: str
    prompt: str
    answer: str | None
    metadata: dict[str, Any]
    propensity: float
    source: Literal["curator", "explore"]


class SelectResponse(BaseModel):
    ticket_id: str
    run_id: int
    step: int
    model_version: int
    problems: list[SelectedProblem]


# the feedback path's documented bounds (runs/feedback.py), declared so clients see them
_Reward = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_REWARD, le=MAX_ABS_REWARD)]
_LogRatio = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_LOG_RATIO,
                                   le=MAX_ABS_LOG_RATIO)]


class ResultIn(_In):
    # declared for OpenAPI as the validator below enforces it
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["utility"]}, {"required": ["rewards"]}]})

    problem_id: Annotated[int, _WHOLE, Field(ge=0, strict=True)]
    utility: Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_UTILITY,
                                    le=MAX_ABS_UTILITY)] | None = None
    rewards: Annotated[list[_Reward], Field(
        min_length=1, max_length=4096,
        description="per-rollout rewards of the problem's group (G ≥ 2 without `utility`)"
    )] | None = None
    log_ratios: Annotated[list[_LogRatio], Field(
        min_length=1, max_length=4096,
        description="per rollout, mean over its tokens of log π_new − log π_old after "
                    "the update")] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ResultIn:
        if self.utility is None and self.rewards is None:
            raise ValueError("each result needs `utility` or `rewards`")
        if self.log_ratios is not None:
            if self.rewards is None:
                raise ValueError("`log_ratios` needs `rewards`")
            if len(self.log_ratios) != len(self.rewards):
                raise ValueError(
                    f"`log_ratios` has {len(self.log_ratios)} values, `rewards` has "
                    f"{len(self.rewards)}: one log-ratio per rollout")
        return self


class FeedbackRequest(_In):
    """Results for some or all of a ticket's problems. The ticket is applied once every
    problem has a result, or with what it holds when a post says `final`."""

    ticket_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
    results: Annotated[list[ResultIn], Field(max_length=65_536)]
    final: bool = Field(False, description="apply the ticket with the results it holds "
                                           "now, without waiting for its other problems")

    @model_validator(mode="after")
    def _something(self) -> FeedbackRequest:
        if not self.results and not self.final:
            raise ValueError("`results` is empty (send results, or `final: true` to apply "
                             "the ticket with those already sent)")
        return self


class FeedbackReceipt(BaseModel):
    ticket_id: str
    accepted: int = Field(description="results this post added")
    state: Literal["partial", "reported", "applied"] = Field(
        description="partial: waiting for the ticket's other problems; reported: queued "
                    "to be applied once")
    replayed: bool = Field(False, description="nothing new: every result was already kept "
                                              "(an exact repeat)")
    reported: int = Field(0, description="results the ticket holds")
    expected: int = Field(0, description="problems in the ticket")


class EstimateOut(BaseModel):
    mean: float | None
    low: float | None = Field(description="95% interval, lower end (None: too few items)")
    high: float | None
    n: int


class SourceSummary(BaseModel):
    groups: int
    utility: EstimateOut = Field(description="mean realised utility Û of the source's items")
    zero_signal: EstimateOut = Field(description="share of groups whose rewards were all "
                                                 "equal (no GRPO signal)")
    reward: EstimateOut
    rollouts: int
    zero_signal_rollouts: int
    wasted_per_useful: float | None = Field(
        description="rollouts spent on zero-signal groups per group with signal")


class RunValue(BaseModel):
    """The in-run control report (curation/control.py): curator items against the
    uniform "explore" items drawn from the same pools."""

    run_id: int
    window: int
    tickets: int
    curator: SourceSummary
    explore: SourceSummary
    difference: EstimateOut = Field(description="curator − explore mean Û, Welch interval")
    uniform_estimate: EstimateOut = Field(
        description="uniform selection's mean Û on the same pools: the curator's items "
                    "plus the explore items as a sample of the rest of each pool")
    wasted_ratio: float | None = Field(
        description="the curator's zero-signal rollouts per useful group over the explore "
                    "items' (< 1: the curator wastes less)")
    utility_kinds: dict[str, int]


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Revoked(BaseModel):
    run_id: int
    revoked: bool


class WorkerHealth(BaseModel):
    alive: int = Field(description="workers whose heartbeat is newer than "
                                   "CURATOR_WORKER_STALE_S")
    last_beat_age_s: float | None = Field(description="since any worker's newest beat")
    lag_s: float = Field(description="age of the oldest reported, unapplied ticket")
    waiting: int = Field(description="tickets reported and not yet applied")


class Readiness(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, bool] = Field(description="db, queue, worker, model")
    workers: WorkerHealth | None = Field(description="null when the database cannot be read")
    error: ErrorDetail | None = None


MetricName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
MetricValue = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]


class MetricsIn(_In):
    """Numbers the trainer measured at one of its steps (eval accuracy, pass@k, …)."""

    step: Annotated[int, _WHOLE, Field(ge=0, le=2**31 - 1, strict=True, description=(
        "the trainer's step (any counter it plots against; the run's select step is "
        "the natural one)"))]
    metrics: Annotated[dict[MetricName, MetricValue], Field(min_length=1, max_length=200)]


class MetricsReceiptOut(BaseModel):
    accepted: int = Field(description="numbers kept by this post")
    replayed: int = Field(description="numbers already kept with the same value")


class MetricSeries(BaseModel):
    metrics: dict[str, list[list[float]]] = Field(
        description="name → [[step, value], …] in step order")
