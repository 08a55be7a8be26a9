"""Apply reported tickets: utility → strategy update → checkpoint, in one transaction.

The ticket is marked applied in the same transaction that writes the new checkpoint and
bumps the run's model version, so a crash at any point either applies a ticket fully or
not at all; the restart re-queues what is still `reported`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.bank.files import BankFiles
from curator.core.tickets import TicketState
from curator.curation.types import Strategy
from curator.db.models import (
    Bank,
    Run,
    Ticket,
)
from curator.runs import apply
from curator.runs.strategy_store import NonFiniteState, load_strategy

log = logging.getLogger("curator.worker")


class ApplyError(RuntimeError):
    """Applying `ticket_id` raised; the cause is chained."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"applying ticket {ticket_id} failed")
        self.ticket_id = ticket_id


@dataclass
class Applied:
    ticket_id: str
    run_id: int
    model_version: int
    seconds: float
    skipped: bool = False
    announcement: str | None = None  # what the handover asks to announce with the version


class Handover(Protocol):
    """Hands each new version to selection (the embedded server's SelectionHandover).

    `prepare` runs after the update and before any write of the apply's transaction, under
    the run's lock (nothing else touches `strategy` then; it must not keep it); `stage`,
    with what `prepare` returned, just before the commit that makes `version` visible
    (staged state must not be used for an older version); `publish` right after the
    commit, with what `prepare` returned, or None when it or the commit failed; what
    `publish` returns goes out with the version's announcement to the API replicas.
    """

    def prepare(self, run: Run, bank: Bank, version: int, strategy: Strategy) -> object: ...

    def stage(self, run_id: int, version: int, prepared: object) -> None: ...

    def publish(self, run_id: int, version: int, prepared: object | None) -> str | None:
        """Returns a payload to announce with the version (for other processes), or None."""
        ...


class Updater:
    """Holds the training copy of each run's strategy between tickets.

    With a `handover` (the embedded server), each new version also goes to the API's
    selection directly, with its next pool already scored; a handover failure is
    logged, not raised: the ticket is applied either way.
    """

    def __init__(self, session_factory: sessionmaker[Session], files: BankFiles,
                 device: str = "cpu", cache_size: int = 32, max_attempts: int = 5,
                 handover: Handover | None = None) -> None:
        self.max_attempts = max_attempts
        self.handover = handover
        self._sf = session_factory
        self._files = files
        self._device = device
        self._cache: OrderedDict[int, tuple[int, Strategy]] = OrderedDict()
        self._cache_size = cache_size
        self._run_locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _run_lock(self, run_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._run_locks.setdefault(run_id, threading.Lock())

    def _strategy(self, session: Session, run: Run, dim: int) -> Strategy:
        hit = self._cache.get(run.id)
        if hit is not None and hit[0] == run.model_version:
            self._cache.move_to_end(run.id)
            return hit[1]
        strategy = load_strategy(session, run, run.model_version, dim, self._device)
        self._cache[run.id] = (run.model_version, strategy)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return strategy

    def apply(self, ticket_id: str) -> Applied:
        """Apply the oldest reported ticket of `ticket_id`'s run.

        A queue message means "this run has one more reported ticket". Applying the run's
        oldest pending ticket (by report time, then step) rather than the named one keeps
        a run's tickets in order even when several workers take messages concurrently;
        each message still applies exactly one ticket, and a message whose work another
        worker already did finds nothing pending and is skipped.
        """
        with self._sf() as s:
            run_id = s.scalar(select(Ticket.run_id).where(Ticket.id == ticket_id))
        if run_id is None:
            return Applied(ticket_id, -1, -1, 0.0, skipped=True)
        with self._run_lock(run_id):
            try:
                return self._apply_oldest(run_id)
            except ApplyError as exc:
                self._record_failure(exc.ticket_id, exc.__cause__)
                raise

    def _record_failure(self, ticket_id: str, cause: BaseException | None, *,
                        final: bool = False) -> None:
        """Count a failed apply; after `max_attempts` (at once when `final`: a failure
        that a retry would repeat) the ticket is set aside as `failed` (a dead letter),
        so one poison ticket cannot stall its run's later tickets."""
        message = f"{type(cause).__name__}: {cause}"[:2000]
        with self._sf() as s:
            pending = (Ticket.id == ticket_id) & (Ticket.state == TicketState.REPORTED)
            s.execute(update(Ticket).where(pending)
                      .values(attempts=Ticket.attempts + 1, error=message))
            limit = Ticket.attempts >= self.max_attempts
            s.execute(update(Ticket).where(pending, *(() if final else (limit,)))
                      .values(state=TicketState.FAILED))
            s.commit()

    def _apply_oldest(self, run_id: int) -> Applied:
        t0 = time.perf_counter()
        with self._sf() as s:
            # Row lock on PostgreSQL: one worker applies a run's tickets at a time.
            run = s.execute(select(Run).where(Run.id == run_id).with_for_update()).scalar_one()
            ticket = s.scalars(select(Ticket).where(
                Ticket.run_id == run_id, Ticket.state == TicketState.REPORTED
            ).order_by(Ticket.reported_at, Ticket.step).limit(1)).first()
            if ticket is None:
                s.rollback()
                return Applied("", run_id, run.model_version, 0.0, skipped=True)
            ticket_id = ticket.id
            try:
                bank = s.get(Bank, run.bank_id)
                strategy = self._strategy(s, run, bank.dim)
                batch, curator_share = apply.observations(s, self._files, self._sf, bank,
                                                          ticket_id, strategy.category_field)
                try:
                    stats = strategy.update(batch)
                except Exception:
                    self._cache.pop(run.id, None)  # the in-memory copy may be half-updated
                    raise
                version = run.model_version + 1
                prepared = self._prepare(run, bank, version, strategy)
                apply.record_update(s, run=run, ticket=ticket, bank=bank, version=version,
                                    strategy=strategy, batch=batch, stats=stats,
                                    curator_share=curator_share)
                if self.handover is None or not self._stage(run_id, version, prepared):
                    prepared = None
                try:
                    s.commit()
                except Exception:
                    # run_id, not run.id: after a failed flush the ORM row cannot be read
                    self._cache.pop(run_id, None)
                    self._publish(run_id, version, None)
                    raise
                announcement = self._publish(run_id, version, prepared)
                self._cache[run_id] = (version, strategy)
            except NonFiniteState as exc:
                # Deterministic: retrying would compute the same state. The update is
                # refused, the ticket set aside (dead letter), the version before it
                # keeps serving, and the run's later tickets are tried from that one.
                s.rollback()
                self._cache.pop(run_id, None)
                log.error("refused ticket %s of run %d: %s", ticket_id, run_id, exc)
                self._record_failure(ticket_id, exc, final=True)
                return Applied(ticket_id, run_id, -1, time.perf_counter() - t0, skipped=True)
            except apply.Overtaken:
                s.rollback()
                self._cache.pop(run_id, None)  # updated from a version that is gone
                log.info("ticket %s of run %d was applied by another worker", ticket_id,
                         run_id)
                return Applied(ticket_id, run_id, -1, time.perf_counter() - t0, skipped=True)
            except Exception as exc:
                s.rollback()
                raise ApplyError(ticket_id) from exc
        return Applied(ticket_id, run_id, version, time.perf_counter() - t0,
                       announcement=announcement)

    def _stage(self, run_id: int, version: int, prepared: object | None) -> bool:
        """Stage the handover before the commit; False when there is nothing staged."""
        if prepared is None:
            return False
        try:
            self.handover.stage(run_id, version, prepared)
            return True
        except Exception:
            log.exception("staging the handover of run %d v%d failed", run_id, version)
            return False

    def _prepare(self, run: Run, bank: Bank, version: int, strategy: Strategy) -> object:
        if self.handover is None:
            return None
        try:
            return self.handover.prepare(run, bank, version, strategy)
        except Exception:
            log.exception("preparing the handover of run %d v%d failed", run.id, version)
            return None

    def _publish(self, run_id: int, version: int, prepared: object | None) -> str | None:
        if self.handover is None:
            return None
        try:
            return self.handover.publish(run_id, version, prepared)
        except Exception:
            log.exception("handing run %d v%d over failed", run_id, version)
            return None
