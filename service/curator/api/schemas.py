"""Request and response schemas; names say their role. ORM models stay in db/."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankCreate(_In):
    name: Name
    embedder: Literal["hash", "minilm", "provided"] = "hash"
    dim: Annotated[int, Field(ge=1, le=8192)] | None = None


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
    external_id: Annotated[str, Field(min_length=1, max_length=512)]
    prompt: Annotated[str, Field(min_length=1, max_length=200_000)]
    answer: Annotated[str, Field(max_length=200_000)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: Annotated[list[Finite], Field(min_length=1, max_length=8192)] | None = None


class ProblemsAdd(_In):
    problems: Annotated[list[ProblemIn], Field(min_length=1)]


class ProblemsAdded(BaseModel):
    added: int
    duplicates: list[str]
    problem_ids: list[int]
    size: int


class RunCreate(_In):
    bank_id: int
    strategy: Annotated[str, Field(min_length=1, max_length=64)] = "uniform"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Annotated[int, Field(ge=0, le=2**62)] | None = None
    name: Name | None = None


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
    reported: int
    applied: int


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
    batch_size: Annotated[int, Field(ge=1)]
    pool_size: Annotated[int, Field(ge=1)] | None = None


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
    problem_id: Annotated[int, Field(ge=0)]
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
    ticket_id: Annotated[str, Field(min_length=1, max_length=64)]
    results: Annotated[list[ResultIn], Field(min_length=1)]


class FeedbackReceipt(BaseModel):
    ticket_id: str
    accepted: int
    state: Literal["reported", "applied"]


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
