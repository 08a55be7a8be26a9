"""Strategy snapshots per run and model version, loaded from checkpoints (hot reload).

The API selects with the newest checkpointed version; the worker trains its own copy.
Both load the same way, so a restart or another replica resumes from the database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from curator.curation.checkpoint import loads
from curator.curation.strategies import build_strategy
from curator.curation.types import Strategy
from curator.db.models import Bank, Checkpoint, Run


def fresh_strategy(run: Run, dim: int, device: str) -> Strategy:
    return build_strategy(run.strategy, dict(run.params), dim=dim, seed=run.seed, device=device)


def load_strategy(session: Session, run: Run, version: int, dim: int, device: str) -> Strategy:
    """The strategy as of `version` (0 = freshly initialised from the run's seed)."""
    strategy = fresh_strategy(run, dim, device)
    if version > 0:
        blob = session.scalar(
            select(Checkpoint.blob).where(Checkpoint.run_id == run.id,
                                          Checkpoint.version == version))
        if blob is None:
            raise LookupError(f"run {run.id} has no checkpoint for version {version}")
        strategy.load_state_dict(loads(blob))
    return strategy


class SnapshotCache:
    """LRU of (run_id → (version, strategy)) for selection; reloads when the version moves."""

    def __init__(self, session_factory: sessionmaker[Session], device: str, size: int = 64):
        self._sf = session_factory
        self._device = device
        self._size = size
        self._items: OrderedDict[int, tuple[int, Strategy]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run: Run, version: int) -> Strategy:
        with self._lock:
            hit = self._items.get(run.id)
            if hit is not None and hit[0] >= version:
                self._items.move_to_end(run.id)
                return hit[1]
        with self._sf() as s:
            dim = s.scalar(select(Bank.dim).where(Bank.id == run.bank_id))
            strategy = load_strategy(s, run, version, dim, self._device)
        with self._lock:
            current = self._items.get(run.id)
            if current is None or current[0] < version:
                self._items[run.id] = (version, strategy)
                self._items.move_to_end(run.id)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return self._items[run.id][1]

    def cached_version(self, run_id: int) -> int | None:
        with self._lock:
            hit = self._items.get(run_id)
            return None if hit is None else hit[0]

    def forget(self, run_id: int) -> None:
        with self._lock:
            self._items.pop(run_id, None)
