"""Score a run's next candidate pool ahead of its select.

In a training loop every select follows an applied update, so every select would meet a
new model version and score its pool on the request path. But the next pool is known
before the select comes: it is `claim_pool(cursor, m, n, seed)`, with the run's
cursor as the last claim left it and m the pool size the trainer used last time. So
whoever holds the new version — the in-process worker right after its commit, or a
replica when a separate worker announces the version — scores that pool at once and
leaves the logits, with what the sampler needs from that version, in the
`SnapshotCache`. The select uses them only if its claim returns the same version, start,
pool size and bank size (then the pool is the same: `claim_pool` is a pure function of
them and the run's seed); anything else scores inline as before, so a stale guess costs
nothing but the wasted work.

Where the process serves selects for the run, it also draws ahead: the next claim's step
is the run's step + 1 and the trainer's batch size is the one it asked for last, so the
draw (selection/draws.py, keyed by seed and step) and its response JSON are made here too,
and the select that matches them only records the ticket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from curator.bank import access
from curator.bank.files import BankFiles
from curator.curation import step
from curator.curation.proposal import claim_pool
from curator.curation.types import Strategy
from curator.db.models import Bank, Run, Ticket
from curator.selection.draws import draw, with_problems
from curator.selection.prescored import Prescored
from curator.selection.snapshots import SnapshotCache

# (training copy, run, bank dim, device) → an independent copy for selection:
# runs/strategy_store.selection_copy, passed in by app.py (see snapshots.SelectionLoader)
SelectionCopier = Callable[[Strategy, Run, int, str], Strategy]


def with_draw(scores: Prescored, seed: int, batch_size: int | None, files: BankFiles,
              session_factory: sessionmaker[Session], bank: Bank) -> Prescored:
    """`scores` with the draw for its expected step and `batch_size` made ahead (the
    same as not drawing when the step or batch size is unknown or does not fit)."""
    if batch_size is None or scores.step < 0 or not 1 <= batch_size <= scores.positions.size:
        return scores
    d = draw(seed=seed, step=scores.step, batch_size=batch_size, positions=scores.positions,
             logits=scores.logits, active=scores.active, top_p=scores.top_p,
             temperature=scores.temperature, explore=scores.explore)
    return dataclasses.replace(scores, drawn=with_problems(d, files, session_factory, bank))


def pool_logits(strategy: Strategy, session_factory: sessionmaker[Session], files: BankFiles,
                bank: Bank, positions: np.ndarray) -> np.ndarray:
    """The strategy's logits over the pool at `positions` (embeddings and categories as
    the select reads them)."""
    categories = None
    if strategy.category_field:
        with session_factory() as s:
            categories = access.categories(s, bank.id, positions, strategy.category_field)
    return step.score(strategy, positions,
                      lambda p: access.embeddings(files, session_factory, bank, p), categories)


def prescore_next(strategy: Strategy, version: int, run_id: int,
                  session_factory: sessionmaker[Session], files: BankFiles,
                  batch_size: int | None = None) -> Prescored | None:
    """Score the run's next pool with `strategy` (the run's model at `version`), and
    draw its next batch ahead when `batch_size` (the trainer's last) is given.

    None when there is nothing to guess from (no ticket yet) or the run is gone.
    """
    with session_factory() as s:
        row = s.execute(select(Run.cursor, Run.seed, Run.bank_id, Run.step)
                        .where(Run.id == run_id)).first()
        if row is None:
            return None
        cursor, seed, bank_id, step = row
        m = s.scalar(select(Ticket.pool_size).where(Ticket.run_id == run_id)
                     .order_by(Ticket.step.desc()).limit(1))
        bank = s.get(Bank, bank_id)
        if m is None or bank is None or bank.size == 0:
            return None
        s.expunge(bank)
    m = min(int(m), bank.size)
    positions, used = claim_pool(int(cursor), m, bank.size, int(seed))
    logits = pool_logits(strategy, session_factory, files, bank, positions)
    scores = Prescored(version=version, start=int(cursor), bank_size=bank.size,
                       positions=positions, logits=logits, active=bool(strategy.active()),
                       top_p=float(strategy.top_p), temperature=float(strategy.temperature),
                       explore=float(strategy.explore_share), used=used,
                       step=int(step) + 1)
    return with_draw(scores, int(seed), batch_size, files, session_factory, bank)


def draw_ahead(scores: Prescored, run_id: int, batch_size: int | None,
               session_factory: sessionmaker[Session], files: BankFiles) -> Prescored:
    """`with_draw` for a pool scored elsewhere (a separate worker's announcement)."""
    if batch_size is None or scores.step < 0:
        return scores
    with session_factory() as s:
        run = s.get(Run, run_id)
        bank = None if run is None else s.get(Bank, run.bank_id)
        if run is None or bank is None or bank.size != scores.bank_size:
            return scores
        seed = int(run.seed)
        s.expunge(bank)
    return with_draw(scores, seed, batch_size, files, session_factory, bank)


def prescore_into(snapshots: SnapshotCache, strategy: Strategy, version: int, run_id: int,
                  session_factory: sessionmaker[Session], files: BankFiles) -> None:
    """`prescore_next` (drawing ahead for the batch size this process last served) and
    keep the result in the snapshot cache."""
    scores = prescore_next(strategy, version, run_id, session_factory, files,
                           snapshots.last_batch_size(run_id))
    if scores is not None:
        snapshots.put_scores(run_id, scores)


class SelectionHandover:
    """The embedded worker's handover of each new version to the API (worker.Handover).

    Before the commit, with the training copy: score the next pool, draw its batch and
    build a selection copy, and stage them in the snapshot cache under the new version;
    a select only takes staged state whose version its claim returned, so nothing is
    used before the commit makes it real, and a select right after the commit neither
    waits for the worker nor reads the checkpoint. After the commit the copy becomes the
    run's current one (or, if the commit failed, the staged state is dropped).
    """

    def __init__(self, snapshots: SnapshotCache, session_factory: sessionmaker[Session],
                 files: BankFiles, device: str, *, copy: SelectionCopier) -> None:
        self.snapshots = snapshots
        self._copy = copy
        self._sf = session_factory
        self._files = files
        self._device = device

    def prepare(self, run: Run, bank: Bank, version: int,
                strategy: Strategy) -> tuple[Strategy, Prescored | None]:
        scores = prescore_next(strategy, version, run.id, self._sf, self._files,
                               self.snapshots.last_batch_size(run.id))
        return self._copy(strategy, run, bank.dim, self._device), scores

    def stage(self, run_id: int, version: int, prepared: object) -> None:
        copy, scores = prepared  # type: ignore[misc]
        self.snapshots.stage(run_id, version, copy, scores)

    def publish(self, run_id: int, version: int, prepared: object | None) -> str | None:
        """Make the staged copy current; the scores also go out with the version's
        announcement, for API replicas in other processes."""
        if prepared is None:
            self.snapshots.unstage(run_id, version)
            return None
        self.snapshots.promote(run_id, version)
        _, scores = prepared  # type: ignore[misc]
        return None if scores is None else scores.encode()
