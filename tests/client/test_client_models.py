"""Model parsing (tolerant of extra keys) and result serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from curator_client import Bank, FeedbackReceipt, Result, RunInfo, Ticket, TicketCounts
from curator_client._models import CreatedRun, problem_to_json, result_to_json


class FakeArray:
    """Duck-types numpy arrays / torch tensors: only `.tolist()`."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def tolist(self) -> list[float]:
        return list(self.values)


def test_bank_ignores_unknown_keys_and_reads_index() -> None:
    bank = Bank.from_json(
        {
            "bank_id": 3,
            "name": "arith",
            "embedder": "minilm",
            "dim": 384,
            "size": 12,
            "index": {"kind": "flat", "ntotal": 12},
            "created_at": "2025-01-01",
        }
    )
    assert bank == Bank(3, "arith", "minilm", 384, 12, {"kind": "flat", "ntotal": 12})
    with pytest.raises(dataclasses.FrozenInstanceError):
        bank.size = 5  # type: ignore[misc]


def test_ticket_parses_problems(api) -> None:
    ticket = Ticket.from_json(api.ticket("t-9", step=3, n=2) | {"future": True})
    assert ticket.ticket_id == "t-9"
    assert (ticket.run_id, ticket.step, ticket.model_version) == (7, 3, 1)
    assert [p.problem_id for p in ticket.problems] == [30, 31]
    first, second = ticket.problems
    assert first.answer is None and second.answer == "2"
    assert second.metadata == {"topic": "add"}
    assert (first.source, second.source) == ("curator", "explore")
    assert second.propensity == 0.5


def test_run_info_parses_counts_and_stats() -> None:
    info = RunInfo.from_json(
        {
            "run_id": 7,
            "bank_id": 1,
            "name": "r",
            "strategy": "uniform",
            "params": {},
            "seed": None,
            "step": 5,
            "model_version": 2,
            "tickets": {"issued": 5, "reported": 4, "applied": 3},
            "stats": {"mean_reward": 0.25},
            "extra": [1, 2],
        }
    )
    assert info.tickets == TicketCounts(issued=5, reported=4, applied=3)
    assert info.stats == {"mean_reward": 0.25}
    assert info.seed is None and info.step == 5 and info.model_version == 2


def test_missing_required_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        FeedbackReceipt.from_json({"ticket_id": "t", "state": "applied"})


def test_created_run_repr_hides_token(api) -> None:
    created = CreatedRun.from_json(api.created_run(token="s3cret"))
    assert created.token == "s3cret"
    assert "s3cret" not in repr(created)


def test_result_dataclass_drops_none_and_converts_arrays() -> None:
    assert Result(4, utility=0.5).to_json() == {"problem_id": 4, "utility": 0.5}
    out = Result(5, rewards=FakeArray([1.0, 0.0]), log_ratios=(0.1, -0.1)).to_json()
    assert out == {"problem_id": 5, "rewards": [1.0, 0.0], "log_ratios": [0.1, -0.1]}
    json.dumps(out)


def test_dict_results_drop_none_keep_other_keys() -> None:
    out = result_to_json({"problem_id": 1, "utility": None, "rewards": [FakeArray([1.0])]})
    assert out == {"problem_id": 1, "rewards": [[1.0]]}


def test_bad_results_are_rejected() -> None:
    with pytest.raises(ValueError, match="problem_id"):
        result_to_json({"utility": 1.0})
    with pytest.raises(TypeError):
        result_to_json(3)  # type: ignore[arg-type]


def test_problem_to_json() -> None:
    out = problem_to_json({"external_id": "a", "prompt": "q", "answer": None, "embedding": (1, 2)})
    assert out == {"external_id": "a", "prompt": "q", "embedding": [1, 2]}
    with pytest.raises(TypeError):
        problem_to_json(["a", "q"])  # type: ignore[arg-type]
