"""What every trainer integration shares: the dataset index ↔ problem mapping and the
ledger of selected tickets waiting for feedback. Pure Python (no torch, no numpy).

Mapping (`IndexMap`). A trainer's sampler yields *dataset indices*; the service names
problems by the bank's `external_id`. A bank built from a dataset uses either

- the row position: `external_id = "row-{i}"` (what `curator bank import` and
  `add_dataset` write when no id column is named), or
- an id column: `external_id = id_format.format(row[id_field])` (`id_format` "{}" by
  default; `id_field` may be a dotted path into nested columns, e.g. "extra_info.index").

`IndexMap.from_dataset` builds the external_id → index dict once from the dataset (one
pass over the id column), or none at all for positions.

Ledger (`TicketLedger`). Each `select()` issues a ticket and returns its problems as
dataset indices. Rewards are recorded per dataset index as they arrive and matched to the
oldest pending ticket that holds that index and has no result for it yet, so a loader
that prefetches the next step (or a problem picked in two consecutive tickets) is
attributed correctly. `report()` sends every complete ticket; `report(partial=True)` also
sends tickets that only got some of their results (the service accepts a subset).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import APIError, CuratorError
from .._models import FeedbackReceipt, Problem

if TYPE_CHECKING:
    from .._runs import Batch, Run

__all__ = [
    "IndexMap",
    "POSITION_FORMAT",
    "TicketLedger",
    "column_values",
    "get_field",
    "mean_log_ratio",
]

logger = logging.getLogger("curator_client.integrations")

POSITION_FORMAT = "row-{}"
"""External id of the row at position i when a bank is built without an id column."""


def get_field(row: Mapping[str, Any], path: str) -> Any:
    """`row[path]`, or a dotted path into nested mappings ("extra_info.index").

    A column literally named with dots wins over the nested reading. Raises KeyError.
    """
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"row has no field {path!r} (columns: {sorted(row)[:20]})")
        value = value[part]
    return value


def column_values(dataset: Any, path: str) -> list[Any]:
    """Every row's value of `path`, in row order.

    Reads a whole column at once where the dataset allows it (a Hugging Face `Dataset`,
    or a dataset object exposing one as `.dataframe`, like verl's `RLHFDataset`), else
    indexes the rows one by one.
    """
    table = getattr(dataset, "dataframe", dataset)
    names = getattr(table, "column_names", None)
    if names is not None:
        top = path if path in names else path.split(".", 1)[0]
        if top not in names:
            raise KeyError(f"dataset has no column {top!r} (columns: {list(names)[:20]})")
        column = list(table[top])
        if top == path:
            return column
        rest = path[len(top) + 1:]
        return [get_field(v, rest) for v in column]
    return [get_field(dataset[i], path) for i in range(len(dataset))]


class IndexMap:
    """Dataset index ↔ bank `external_id`, for one dataset (see the module docstring)."""

    def __init__(self, size: int, *, id_format: str = POSITION_FORMAT,
                 values: Sequence[Any] | None = None) -> None:
        if id_format.count("{}") != 1:
            raise ValueError(f"id_format must contain '{{}}' once, got {id_format!r}")
        self.size = int(size)
        self.id_format = id_format
        self._ids: list[str] | None = None
        self._index: dict[str, int] | None = None
        if values is not None:
            ids = [id_format.format(v) for v in values]
            index = {ext: i for i, ext in enumerate(ids)}
            if len(index) != len(ids):
                dup = next(e for i, e in enumerate(ids) if index[e] != i)
                raise ValueError(f"external ids are not unique in the dataset (e.g. {dup!r}); "
                                 "pick an id field with one value per row")
            self._ids, self._index = ids, index
            self.size = len(ids)

    @classmethod
    def positional(cls, size: int, id_format: str = POSITION_FORMAT) -> IndexMap:
        """Row i is the problem `id_format.format(i)` ("row-{i}" by default)."""
        return cls(size, id_format=id_format)

    @classmethod
    def from_values(cls, values: Sequence[Any], id_format: str = "{}") -> IndexMap:
        """Row i is the problem `id_format.format(values[i])`."""
        return cls(len(values), id_format=id_format, values=values)

    @classmethod
    def from_dataset(cls, dataset: Any, id_field: str | None = None,
                     id_format: str | None = None) -> IndexMap:
        """Positions when `id_field` is None, else the values of that (dotted) field."""
        if id_field is None:
            return cls.positional(len(dataset), id_format or POSITION_FORMAT)
        return cls.from_values(column_values(dataset, id_field), id_format or "{}")

    @property
    def positional_ids(self) -> bool:
        return self._ids is None

    def __len__(self) -> int:
        return self.size

    def external_id(self, index: int) -> str:
        if not 0 <= index < self.size:
            raise IndexError(f"dataset index {index} out of range [0, {self.size})")
        return self._ids[index] if self._ids is not None else self.id_format.format(index)

    def index(self, external_id: str) -> int:
        """The dataset index of a problem; KeyError when the dataset has no such row."""
        if self._index is not None:
            try:
                return self._index[external_id]
            except KeyError:
                raise KeyError(self._missing(external_id)) from None
        head, _, tail = self.id_format.partition("{}")
        middle = external_id[len(head):len(external_id) - len(tail)]
        if (external_id.startswith(head) and external_id.endswith(tail) and middle.isdigit()
                and int(middle) < self.size):
            return int(middle)
        raise KeyError(self._missing(external_id))

    def index_of_value(self, value: Any) -> int:
        """The dataset index of the row whose id field holds `value`."""
        return self.index(self.id_format.format(value))

    def _missing(self, external_id: str) -> str:
        how = ("row positions " + repr(self.id_format) if self._ids is None
               else f"an id column formatted {self.id_format!r}")
        return (f"problem {external_id!r} is not a row of this dataset ({self.size} rows, "
                f"mapped by {how}): build the bank from the same dataset with the same "
                "id field")


def mean_log_ratio(new_logps: Sequence[float], old_logps: Sequence[float],
                   mask: Sequence[float] | None = None) -> float:
    """Length-normalised log π_new − log π_old of one rollout (mean over its tokens)."""
    weights = [1.0] * len(new_logps) if mask is None else [float(m) for m in mask]
    total = sum(w * (float(n) - float(o)) for n, o, w in zip(new_logps, old_logps, weights))
    count = sum(weights)
    return total / count if count > 0 else 0.0


def _result(problem_id: int, rewards: Sequence[float] | None,
            log_ratios: Sequence[float] | None, utility: float | None) -> dict[str, Any] | None:
    """One feedback result; None when nothing in it is usable."""
    result: dict[str, Any] = {"problem_id": problem_id}
    if utility is not None and math.isfinite(float(utility)):
        result["utility"] = float(utility)
    if rewards is not None:
        ratios = [None] * len(rewards) if log_ratios is None else [float(x) for x in log_ratios]
        pairs = [(float(r), lr) for r, lr in zip(rewards, ratios)
                 if math.isfinite(float(r)) and (lr is None or math.isfinite(lr))]
        if pairs:
            result["rewards"] = [r for r, _ in pairs]
            if log_ratios is not None:
                result["log_ratios"] = [lr for _, lr in pairs]
    return result if len(result) > 1 else None


@dataclass
class _Pending:
    batch: Batch
    indices: list[int]
    problems: dict[int, Problem]  # dataset index -> problem
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # problem_id -> result
    seen: set[int] = field(default_factory=set)  # problem ids recorded, sendable or not

    @property
    def complete(self) -> bool:
        return len(self.seen) == len(self.problems)


class TicketLedger:
    """Tickets of one run selected but not yet reported, and the results gathered for them.

    `strict=False` (the default for training): a feedback the service refuses or cannot
    take is logged and its ticket dropped, so a Curator outage never stops training;
    `strict=True` raises instead. `max_pending` bounds how many unreported tickets are
    kept (the oldest is dropped beyond it: a trainer that skipped a step).
    """

    def __init__(self, run: Run, index_map: IndexMap, *, pool_size: int | None = None,
                 strict: bool = False, max_pending: int = 16) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.run = run
        self.index_map = index_map
        self.pool_size = pool_size
        self.strict = strict
        self.max_pending = max_pending
        self._pending: list[_Pending] = []
        self.selected = 0  # tickets issued through this ledger
        self.reported = 0  # tickets whose feedback the service accepted
        self.dropped = 0  # tickets given up (never reported, or refused)
        self.unmatched = 0  # results for an index in no pending ticket
        self.last_batch: Batch | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def select(self, batch_size: int) -> list[int]:
        """Ask the run for `batch_size` problems; their dataset indices, in ticket order."""
        batch = self.run.select(batch_size, self.pool_size)
        problems: dict[int, Problem] = {}
        indices = []
        for p in batch.problems:
            i = self.index_map.index(p.external_id)
            problems[i] = p
            indices.append(i)
        self._pending.append(_Pending(batch, indices, problems))
        self.selected += 1
        self.last_batch = batch
        while len(self._pending) > self.max_pending:
            old = self._pending.pop(0)
            self.dropped += 1
            logger.warning("curator: dropping unreported ticket %s (more than %d pending)",
                           old.batch.ticket_id, self.max_pending)
        return indices

    def record(self, index: int, rewards: Sequence[float] | None = None,
               log_ratios: Sequence[float] | None = None, *,
               utility: float | None = None) -> bool:
        """Attach one problem's result (its group's rewards, optionally per-rollout
        log-ratios, or a ready `utility`) to the oldest pending ticket holding `index`.

        Non-finite rewards (an unscorable rollout) are dropped with their log-ratio.
        Returns False when no pending ticket is waiting for this index.
        """
        if rewards is not None and log_ratios is not None and len(rewards) != len(log_ratios):
            raise ValueError(f"{len(rewards)} rewards but {len(log_ratios)} log_ratios")
        for pending in self._pending:
            problem = pending.problems.get(int(index))
            if problem is None or problem.problem_id in pending.seen:
                continue
            pending.seen.add(problem.problem_id)
            result = _result(problem.problem_id, rewards, log_ratios, utility)
            if result is not None:
                pending.results[problem.problem_id] = result
            return True
        self.unmatched += 1
        return False

    def record_many(self, items: Iterable[tuple[int, Sequence[float]]]) -> int:
        """`record(index, rewards)` for each pair; returns how many matched a ticket."""
        return sum(self.record(i, r) for i, r in items)

    def report(self, *, partial: bool = False) -> list[FeedbackReceipt]:
        """Send feedback for every complete ticket, oldest first.

        With `partial` (the trainer's step is over), also send every ticket up to the
        newest one that has any result, with the results it has; of those, tickets with
        no result at all are dropped (skipped by the trainer). Tickets selected after it
        (a loader's prefetch) stay pending.
        """
        last = -1
        if partial:
            last = max((k for k, p in enumerate(self._pending) if p.results), default=-1)
        receipts: list[FeedbackReceipt] = []
        keep: list[_Pending] = []
        for k, pending in enumerate(self._pending):
            if not pending.complete and k > last:
                keep.append(pending)
            elif not pending.results:
                self.dropped += 1
            elif (receipt := self._send(pending)) is not None:
                receipts.append(receipt)
        self._pending = keep
        return receipts

    def _send(self, pending: _Pending) -> FeedbackReceipt | None:
        results = [pending.results[pending.problems[i].problem_id] for i in pending.indices
                   if pending.problems[i].problem_id in pending.results]
        try:
            receipt = pending.batch.report(results)
        except CuratorError as exc:
            if self.strict:
                raise
            self.dropped += 1
            kind = "refused" if isinstance(exc, APIError) else "could not be sent"
            logger.warning("curator: feedback for ticket %s %s: %s",
                           pending.batch.ticket_id, kind, exc)
            return None
        self.reported += 1
        return receipt
