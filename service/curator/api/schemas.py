"""Request and response schemas; names say their role. ORM models stay in db/."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Finite = Annotated[float, Field(allow_inf_nan=False)]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
# Sizes and ids are strict integers: "3", 3.0 or true are refused rather than coerced.
Id = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]  # INTEGER primary keys


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
    dim: Annotated[int, Field(ge=1, le=8192, strict=True)] | None = None


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
    seed: Annotated[int, Field(ge=0, le=2**62, strict=True)] | None = None
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
    batch_size: Annotated[int, Field(ge=1, strict=True)]
    pool_size: Annotated[int, Field(ge=1, strict=True)] | None = None


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


class ResultIn(_In):
    problem_id: Annotated[int, Field(ge=0, strict=True)]
    utility: Finite | None = None
    rewards: Annotated[list[Finite], Field(min_length=1, max_length=4096)] | None = None
    log_ratios: Annotated[list[Finite], Field(min_length=1, max_length=4096)] | None = None

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
    ticket_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
    results: Annotated[list[ResultIn], Field(min_length=1)]


class FeedbackReceipt(BaseModel):
    ticket_id: str
    accepted: int
    state: Literal["reported", "applied"]


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
