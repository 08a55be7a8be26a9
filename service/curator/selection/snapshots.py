"""Strategy snapshots per run and model version, for selection.

The API selects with the newest version; the worker trains its own copy. A version
reaches the cache by one of three roads, the first two off the request path: the
in-process worker hands a selection copy over right after its commit (`put`); a replica
loads an announced version in the background; or a select that finds nothing newer
loads the checkpoint itself (`get`). The cache also keeps each run's prescored next pool
(selection/prescore.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from curator.curation.types import Strategy
from curator.db.models import Bank, Run
from curator.selection.prescored import Prescored

# (session, run, version, bank dim, device) → the strategy as of `version`, for
# selection only: runs/strategy_store.load_selection, passed in by app.py, so this
# machinery reads checkpoints without depending on the use cases above it
SelectionLoader = Callable[[Session, Run, int, int, str], Strategy]


class SnapshotCache:
    """LRU of (run_id → (version, strategy)) for selection; reloads when the version moves."""

    def __init__(self, session_factory: sessionmaker[Session], device: str, *,
                 load: SelectionLoader, size: int = 64):
        self._sf = session_factory
        self._load = load
        self._device = device
        self._size = size
        self._items: OrderedDict[int, tuple[int, Strategy]] = OrderedDict()
        self._scores: OrderedDict[int, Prescored] = OrderedDict()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a version or pool came in
        # True where separate workers announce versions (app.py, preload_versions)
        self.announced = False
        self._pending: dict[int, tuple[int, threading.Event]] = {}
        # a version the in-process worker is committing: (version, selection copy)
        self._staged: dict[int, tuple[int, Strategy]] = {}
        self._batch_sizes: OrderedDict[int, int] = OrderedDict()  # last select's, per run
        self.prescored_hits = 0  # selects that used a prescored pool
        self.prescored_misses = 0  # selects that scored their pool inline
        self.drawn_ahead = 0  # selects whose draw was made ahead too

    def get(self, run: Run, version: int) -> Strategy:
        return self.get_versioned(run, version)[1]

    def get_versioned(self, run: Run, version: int) -> tuple[int, Strategy]:
        """The run's selection copy at `version` or newer (one the worker handed over
        since the caller's claim), with the version it is: what the ticket records."""
        with self._lock:
            hit = self._items.get(run.id)
            if hit is not None and hit[0] >= version:
                self._items.move_to_end(run.id)
                return hit
            staged = self._staged.get(run.id)
        if staged is not None and staged[0] == version:  # committed: the claim returned it
            return self._put(run.id, version, staged[1])
        with self._sf() as s:
            dim = s.scalar(select(Bank.dim).where(Bank.id == run.bank_id))
            strategy = self._load(s, run, version, dim, self._device)
        return self._put(run.id, version, strategy)

    def put(self, run_id: int, version: int, strategy: Strategy) -> Strategy:
        """Install `strategy` as the run's selection copy at `version` unless the cache
        already holds that version or a newer one; returns the copy the cache now holds
        (a newer one a concurrent load put there wins)."""
        return self._put(run_id, version, strategy)[1]

    def _put(self, run_id: int, version: int, strategy: Strategy) -> tuple[int, Strategy]:
        with self._lock:
            current = self._items.get(run_id)
            if current is None or current[0] < version:
                self._items[run_id] = (version, strategy)
            self._items.move_to_end(run_id)
            while len(self._items) > self._size:
                evicted, _ = self._items.popitem(last=False)
                self._scores.pop(evicted, None)
            self._arrived.notify_all()
            return self._items[run_id]

    def stage(self, run_id: int, version: int, strategy: Strategy,
              scores: Prescored | None) -> None:
        """The in-process worker is about to commit `version`: keep its selection copy
        and prescored pool, for selects whose claim returns that version (see
        selection/prescore.py SelectionHandover)."""
        with self._lock:
            self._staged[run_id] = (version, strategy)
        if scores is not None:
            self.put_scores(run_id, scores)  # matched on the exact version: safe to keep

    def promote(self, run_id: int, version: int) -> None:
        """`version` is committed: its staged copy becomes the run's current one."""
        with self._lock:
            staged = self._staged.get(run_id)
            if staged is None or staged[0] != version:
                return
            del self._staged[run_id]
        self.put(run_id, version, staged[1])

    def unstage(self, run_id: int, version: int) -> None:
        """`version`'s commit failed: drop what was staged for it (a retry may commit
        another model under the same number)."""
        with self._lock:
            staged = self._staged.get(run_id)
            if staged is not None and staged[0] == version:
                del self._staged[run_id]
            scores = self._scores.get(run_id)
            if scores is not None and scores.version == version:
                del self._scores[run_id]

    def expect(self, run_id: int, version: int) -> None:
        """A replica is loading announced `version` (app.py, preload_versions): selects of
        the run wait for it rather than load it a second time."""
        with self._lock:
            self._pending[run_id] = (version, threading.Event())

    def delivered(self, run_id: int, version: int) -> None:
        """The handover of `version` is done (or failed): release waiting selects."""
        with self._lock:
            pending = self._pending.get(run_id)
            if pending is not None and pending[0] <= version:
                del self._pending[run_id]
                pending[1].set()

    def _holds(self, run_id: int, version: int) -> bool:
        scores, item = self._scores.get(run_id), self._items.get(run_id)
        staged = self._staged.get(run_id)
        return ((scores is not None and scores.version >= version)
                or (item is not None and item[0] >= version)
                or (staged is not None and staged[0] >= version))

    def await_announced(self, run_id: int, version: int, timeout: float = 0.025) -> None:
        """Where separate workers announce versions, wait briefly for `version` (the run's
        newest, as this select read it) to arrive: the trainer may have seen the worker's
        commit a moment before the announcement reached this replica, and a few
        milliseconds here spare loading the checkpoint and scoring the pool inline."""
        if not self.announced or version <= 0:
            return
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not self._holds(run_id, version):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._arrived.wait(left)

    def wait_pending(self, run_id: int, timeout: float = 5.0) -> None:
        """Block until the run's announced handover is delivered (at most `timeout`):
        it costs what scoring inline would, and spares the checkpoint read."""
        with self._lock:
            pending = self._pending.get(run_id)
        if pending is not None:
            pending[1].wait(timeout)

    def put_scores(self, run_id: int, scores: Prescored) -> None:
        """Keep the run's prescored next pool (replacing an older version's)."""
        with self._lock:
            current = self._scores.get(run_id)
            if current is None or (current.version, current.start) <= (scores.version,
                                                                      scores.start):
                self._scores[run_id] = scores
                self._scores.move_to_end(run_id)
                while len(self._scores) > self._size:
                    self._scores.popitem(last=False)
                self._arrived.notify_all()

    def replace_scores(self, run_id: int, old: Prescored, new: Prescored) -> None:
        """Put `new` in `old`'s place if `old` is still waiting (no select took it)."""
        with self._lock:
            if self._scores.get(run_id) is old:
                self._scores[run_id] = new

    def take_scores(self, run_id: int, version: int, start: int, bank_size: int,
                    pool_size: int, batch_size: int) -> Prescored | None:
        """The run's prescored pool if it is exactly this claim's (see prescore.py);
        a prescored pool is used at most once. Also notes `batch_size` as the run's
        last, for the next draw made ahead."""
        with self._lock:
            self._batch_sizes[run_id] = batch_size
            self._batch_sizes.move_to_end(run_id)
            while len(self._batch_sizes) > 4 * self._size:
                self._batch_sizes.popitem(last=False)
            scores = self._scores.get(run_id)
            if scores is None or not scores.matches(version, start, bank_size, pool_size):
                self.prescored_misses += 1
                return None
            del self._scores[run_id]
            self.prescored_hits += 1
            return scores

    def note_drawn_ahead(self) -> None:
        with self._lock:
            self.drawn_ahead += 1

    def last_batch_size(self, run_id: int) -> int | None:
        """The batch size of the run's last select here (None: none served here)."""
        with self._lock:
            return self._batch_sizes.get(run_id)

    def scored_version(self, run_id: int) -> int | None:
        """The model version of the run's prescored pool, if one is waiting."""
        with self._lock:
            scores = self._scores.get(run_id)
            return None if scores is None else scores.version

    def cached_version(self, run_id: int) -> int | None:
        with self._lock:
            hit = self._items.get(run_id)
            return None if hit is None else hit[0]

    def forget(self, run_id: int) -> None:
        with self._lock:
            self._items.pop(run_id, None)
            self._scores.pop(run_id, None)
            self._batch_sizes.pop(run_id, None)
            self._staged.pop(run_id, None)
