"""Typed, immutable views of the server's JSON answers (and the `Result` the client sends).

Every model is a frozen dataclass built by `from_json`, which reads the keys it knows and
ignores any others, so a newer server adding fields does not break an older client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AddProblemsResult",
    "Bank",
    "CreatedRun",
    "FeedbackReceipt",
    "Health",
    "Problem",
    "Result",
    "RunInfo",
    "Ticket",
    "TicketCounts",
]


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


@dataclass(frozen=True)
class Bank:
    """A problem bank. `index` is only filled by `get_bank` (the server's index status)."""

    bank_id: int
    name: str
    embedder: str
    dim: int
    size: int
    index: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bank:
        index = data.get("index")
        return cls(
            bank_id=int(data["bank_id"]),
            name=str(data["name"]),
            embedder=str(data["embedder"]),
            dim=int(data["dim"]),
            size=int(data["size"]),
            index=None if index is None else dict(index),
        )


@dataclass(frozen=True)
class AddProblemsResult:
    """Outcome of `add_problems`, summed over every chunk sent.

    `problem_ids` are the ids of the added problems, in the order they were sent;
    `duplicates` the external ids the bank already held; `size` the bank size afterwards.
    """

    added: int
    duplicates: tuple[str, ...]
    problem_ids: tuple[int, ...]
    size: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AddProblemsResult:
        return cls(
            added=int(data["added"]),
            duplicates=tuple(str(x) for x in data.get("duplicates") or ()),
            problem_ids=tuple(int(x) for x in data.get("problem_ids") or ()),
            size=int(data["size"]),
        )


@dataclass(frozen=True)
class CreatedRun:
    """The answer to run creation, including the run's own bearer `token`."""

    run_id: int
    token: str
    bank_id: int
    strategy: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    name: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedRun:
        return cls(
            run_id=int(data["run_id"]),
            token=str(data["token"]),
            bank_id=int(data["bank_id"]),
            strategy=str(data["strategy"]),
            params=_dict(data.get("params")),
            seed=_opt_int(data.get("seed")),
            name=_opt_str(data.get("name")),
        )

    def __repr__(self) -> str:  # never print the token
        return (
            f"CreatedRun(run_id={self.run_id!r}, bank_id={self.bank_id!r}, "
            f"strategy={self.strategy!r}, params={self.params!r}, seed={self.seed!r}, "
            f"name={self.name!r})"
        )


@dataclass(frozen=True)
class TicketCounts:
    """How many tickets of a run were issued, reported and applied to the model."""

    issued: int = 0
    reported: int = 0
    applied: int = 0
    failed: int = 0  # set aside after repeated apply errors (see the run's tickets)
    partial: int = 0  # issued, holding some results, waiting for the rest (or `final`)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TicketCounts:
        data = data or {}
        return cls(
            issued=int(data.get("issued", 0)),
            reported=int(data.get("reported", 0)),
            applied=int(data.get("applied", 0)),
            failed=int(data.get("failed", 0)),
            partial=int(data.get("partial", 0)),
        )


@dataclass(frozen=True)
class RunInfo:
    """State of a run (`GET /v1/runs/{run_id}`)."""

    run_id: int
    bank_id: int
    strategy: str
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    step: int = 0
    model_version: int = 0
    tickets: TicketCounts = field(default_factory=TicketCounts)
    stats: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False  # the run's token was revoked: it selects and reports no more

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunInfo:
        return cls(
            run_id=int(data["run_id"]),
            bank_id=int(data["bank_id"]),
            strategy=str(data["strategy"]),
            name=_opt_str(data.get("name")),
            params=_dict(data.get("params")),
            seed=_opt_int(data.get("seed")),
            step=int(data.get("step", 0)),
            model_version=int(data.get("model_version", 0)),
            tickets=TicketCounts.from_json(data.get("tickets")),
            stats=_dict(data.get("stats")),
            revoked=bool(data.get("revoked", False)),
        )


@dataclass(frozen=True)
class Problem:
    """One selected problem. `source` is "curator" (chosen by the strategy) or "explore"."""

    problem_id: int
    external_id: str
    prompt: str
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    propensity: float = 1.0
    source: str = "curator"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Problem:
        return cls(
            problem_id=int(data["problem_id"]),
            external_id=str(data["external_id"]),
            prompt=str(data["prompt"]),
            answer=_opt_str(data.get("answer")),
            metadata=_dict(data.get("metadata")),
            propensity=float(data.get("propensity", 1.0)),
            source=str(data.get("source", "curator")),
        )


@dataclass(frozen=True)
class Ticket:
    """A selected batch; feedback for it is sent with its `ticket_id`."""

    ticket_id: str
    run_id: int
    step: int
    model_version: int
    problems: tuple[Problem, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ticket:
        return cls(
            ticket_id=str(data["ticket_id"]),
            run_id=int(data["run_id"]),
            step=int(data["step"]),
            model_version=int(data["model_version"]),
            problems=tuple(Problem.from_json(p) for p in data["problems"]),
        )


@dataclass(frozen=True)
class FeedbackReceipt:
    """The server's acknowledgement of feedback.

    `accepted`: results this post added; `state`: "partial" (the ticket waits for its
    other problems' results), "reported" (queued, applied once) or "applied";
    `replayed`: nothing was new (an exact repeat, e.g. a retry); `reported` / `expected`:
    results the ticket holds / problems in it.
    """

    ticket_id: str
    accepted: int
    state: str
    replayed: bool = False
    reported: int = 0
    expected: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackReceipt:
        return cls(
            ticket_id=str(data["ticket_id"]),
            accepted=int(data["accepted"]),
            state=str(data["state"]),
            replayed=bool(data.get("replayed", False)),
            reported=int(data.get("reported", 0)),
            expected=int(data.get("expected", 0)),
        )


@dataclass(frozen=True)
class Health:
    """Answer of `/healthz` or `/readyz`. `ok` is true when the HTTP status was 200.

    `/readyz` also fills `checks` (db, queue, worker, model) and `workers`: `alive`,
    `last_beat_age_s`, `lag_s` (age of the oldest reported, unapplied ticket) and
    `waiting` (None when the server could not read its database); `error` is the one
    error shape when it could not answer fully.
    """

    status: str
    checks: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    http_status: int = 200

    @property
    def ok(self) -> bool:
        return self.http_status == 200

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, http_status: int = 200) -> Health:
        return cls(
            status=str(data["status"]),
            checks=_dict(data.get("checks")),
            workers=None if data.get("workers") is None else dict(data["workers"]),
            error=None if data.get("error") is None else dict(data["error"]),
            http_status=http_status,
        )


@dataclass(frozen=True)
class Result:
    """Feedback for one problem of a ticket: either a `utility`, or the rollouts' `rewards`
    (optionally with per-rollout `log_ratios` of the same length).

    Plain dicts with the same keys are accepted wherever a `Result` is. Values may be
    numpy arrays or torch tensors (anything with `.tolist()`); `None` fields are not sent.
    """

    problem_id: int
    utility: float | None = None
    rewards: Sequence[float] | None = None
    log_ratios: Sequence[float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"problem_id": int(self.problem_id)}
        if self.utility is not None:
            out["utility"] = float(self.utility)
        if self.rewards is not None:
            out["rewards"] = _jsonable(self.rewards)
        if self.log_ratios is not None:
            out["log_ratios"] = _jsonable(self.log_ratios)
        return out


def _jsonable(value: Any) -> Any:
    """Turn numpy / torch values (duck-typed via `.tolist()`) and tuples into JSON types."""
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy array / scalar, torch tensor: no import needed
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _jsonable(v) for k, v in data.items() if v is not None}


def result_to_json(result: Result | Mapping[str, Any]) -> dict[str, Any]:
    """Serialise one feedback result (a `Result` or a dict), dropping `None` values."""
    if isinstance(result, Result):
        return result.to_json()
    if isinstance(result, Mapping):
        if "problem_id" not in result:
            raise ValueError(f"feedback result without 'problem_id': {result!r}")
        return _drop_none(result)
    raise TypeError(f"a feedback result must be a Result or a dict, not {type(result).__name__}")


def problem_to_json(problem: Mapping[str, Any]) -> dict[str, Any]:
    """Serialise one problem to add to a bank, dropping `None` values."""
    if not isinstance(problem, Mapping):
        raise TypeError(f"a problem must be a dict, not {type(problem).__name__}")
    return _drop_none(problem)
