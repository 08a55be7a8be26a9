"""Select: proposal → scorer → sampler → ticket (docs/design.md §2)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from curator.bank.files import BankFiles
from curator.core.errors import Clash, Invalid
from curator.core.tickets import TicketState
from curator.curation.proposal import claim_pool
from curator.db.models import Bank, Run, Ticket, TicketItem, utcnow
from curator.selection.draws import Draw, draw, with_problems
from curator.selection.prescore import pool_logits
from curator.selection.snapshots import SnapshotCache


class SelectError(Invalid):
    """A select the run's bank cannot serve (empty, or smaller than asked)."""


@dataclass(frozen=True)
class SelectLimits:
    """The service's size limits for a select (CURATOR_MAX_BATCH_SIZE and friends)."""

    max_batch_size: int = 8192
    max_pool_size: int = 65536
    default_pool_size: int = 2048

    def pool_size(self, batch_size: int, pool_size: int | None) -> int:
        """The pool a select scores, checked: the asked size, or the default (at least
        the batch); SelectError for a request beyond the limits."""
        if batch_size > self.max_batch_size:
            raise SelectError(f"batch_size must be ≤ {self.max_batch_size}",
                              {"batch_size": batch_size})
        m = pool_size or max(self.default_pool_size, batch_size)
        if m > self.max_pool_size:
            raise SelectError(f"pool_size must be ≤ {self.max_pool_size}", {"pool_size": m})
        if pool_size is not None and batch_size > pool_size:
            raise SelectError(f"batch_size {batch_size} exceeds pool_size {pool_size}",
                              {"batch_size": batch_size, "pool_size": pool_size})
        return m


class KeyReused(Clash):
    """An Idempotency-Key already used by this run for a select of another size."""


@dataclass
class SelectedItem:
    problem_id: int
    external_id: str
    prompt: str
    answer: str | None
    metadata: dict[str, Any]
    propensity: float
    source: str


@dataclass
class SelectResult:
    ticket_id: str
    run_id: int
    step: int
    model_version: int
    problems_json: bytes  # the `problems` array, encoded (see bank/payloads.py)
    replayed: bool = False  # the ticket an earlier select with the same key issued

    @property
    def problems(self) -> list[SelectedItem]:
        return [SelectedItem(**p) for p in json.loads(self.problems_json)]

    def to_json(self) -> bytes:
        head = json.dumps({"ticket_id": self.ticket_id, "run_id": self.run_id,
                           "step": self.step, "model_version": self.model_version})
        return head[:-1].encode() + b', "problems": ' + self.problems_json + b"}"


def insert_items(session: Session, rows: list[tuple[str, int, int, float, float, str]]) -> None:
    """Insert a ticket's items: COPY on PostgreSQL (one round trip instead of a
    multi-row INSERT per batch), executemany elsewhere."""
    if session.bind.dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cur, cur.copy(
                "COPY ticket_items (ticket_id, problem_id, rank, logit, propensity, source) "
                "FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if session.bind.dialect.name == "sqlite":  # the driver's executemany, no ORM layer
        session.connection().exec_driver_sql(
            "INSERT INTO ticket_items (ticket_id, problem_id, rank, logit, propensity, source)"
            " VALUES (?, ?, ?, ?, ?, ?)", rows)
        return
    session.execute(TicketItem.__table__.insert(), [
        {"ticket_id": t, "problem_id": p, "rank": r, "logit": lg, "propensity": pr,
         "source": src} for t, p, r, lg, pr, src in rows])


_RUNS = Run.__table__
# Built once (Core, not the ORM's bulk-update path): this is the hot path, and building
# an UPDATE per call cost as much as running it.
_CLAIM = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"))
          .values(cursor=_RUNS.c.cursor + bindparam("count"), step=_RUNS.c.step + 1)
          .returning(_RUNS.c.cursor, _RUNS.c.step, _RUNS.c.model_version))
_MORE = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"))
         .values(cursor=_RUNS.c.cursor + bindparam("count")).returning(_RUNS.c.cursor))
_NEW_TICKET = Ticket.__table__.insert()


def _claim(session: Session, run_id: int, count: int) -> tuple[int, int, int]:
    """Atomically advance the run's cursor by `count` and its step by one.

    One UPDATE … RETURNING: row-locked on PostgreSQL, database-locked on SQLite, so
    concurrent selects on any replica get disjoint counter ranges.
    """
    cursor, step, version = session.connection().execute(
        _CLAIM, {"run_id": run_id, "count": count}).one()
    return cursor - count, step, version


def _more(session: Session, run_id: int, count: int) -> int:
    return session.connection().execute(
        _MORE, {"run_id": run_id, "count": count}).scalar_one() - count


def select_batch(*, session: Session, session_factory: sessionmaker[Session], run: Run,
                 bank: Bank, batch_size: int, pool_size: int | None, files: BankFiles,
                 snapshots: SnapshotCache, idempotency_key: str | None = None,
                 limits: SelectLimits = SelectLimits()) -> SelectResult:
    """Claim the run's next pool, draw `batch_size` problems from it and record the
    ticket, in `session`'s transaction (committed here; the caller may have read the run
    and bank in it). `pool_size` None: the limits' default; every size is checked here
    (`limits`, then the bank's size).

    With an `idempotency_key`, a select this run already answered for that key returns
    the same ticket (`replayed`) and claims nothing: a client may resend a select whose
    answer it never got. The same key with another batch or pool size is a KeyReused."""
    pool_size = limits.pool_size(batch_size, pool_size)
    if idempotency_key is not None:
        earlier = _replay(session, session_factory, files, run, bank, idempotency_key,
                          batch_size, pool_size)
        if earlier is not None:
            return earlier
    try:
        return _select(session, session_factory, run, bank, batch_size, pool_size, files,
                       snapshots, idempotency_key)
    except IntegrityError:
        # A concurrent select with the same key committed first (the unique index on
        # (run_id, idempotency_key)): this one's claim is rolled back; answer with that one.
        session.rollback()
        if idempotency_key is None:
            raise
        earlier = _replay(session, session_factory, files, run, bank, idempotency_key,
                          batch_size, pool_size)
        if earlier is None:
            raise
        return earlier


def _replay(session: Session, session_factory: sessionmaker[Session], files: BankFiles,
            run: Run, bank: Bank, key: str, batch_size: int,
            pool_size: int) -> SelectResult | None:
    """The ticket an earlier select of `run` with `key` issued, as that select answered."""
    ticket = session.execute(select(Ticket.id, Ticket.step, Ticket.model_version,
                                    Ticket.pool_size).where(
        Ticket.run_id == run.id, Ticket.idempotency_key == key)).first()
    if ticket is None:
        return None
    items = session.execute(select(TicketItem.problem_id, TicketItem.logit,
                                   TicketItem.propensity, TicketItem.source)
                            .where(TicketItem.ticket_id == ticket.id)
                            .order_by(TicketItem.rank)).all()
    m = min(pool_size, bank.size)
    if len(items) != batch_size or ticket.pool_size != m:
        raise KeyReused(
            f"Idempotency-Key {key!r} was used for a select of batch_size {len(items)}, "
            f"pool_size {ticket.pool_size}: send a new key for a different select",
            {"idempotency_key": key, "ticket_id": ticket.id, "batch_size": len(items),
             "pool_size": ticket.pool_size})
    session.rollback()  # nothing to write; release the read before encoding
    earlier = Draw(step=ticket.step, batch_size=len(items),
                   problem_ids=np.array([r.problem_id for r in items], dtype=np.int64),
                   logits=np.array([r.logit for r in items], dtype=np.float64),
                   propensities=np.array([r.propensity for r in items], dtype=np.float64),
                   sources=[r.source for r in items], pool_entropy=0.0)
    earlier = with_problems(earlier, files, session_factory, bank)
    return SelectResult(ticket.id, run.id, ticket.step, ticket.model_version,
                        earlier.problems_json, replayed=True)


def _select(session: Session, session_factory: sessionmaker[Session], run: Run, bank: Bank,
            batch_size: int, pool_size: int, files: BankFiles, snapshots: SnapshotCache,
            idempotency_key: str | None) -> SelectResult:
    n = bank.size
    if n == 0:
        raise SelectError("the run's bank is empty: add problems first", {"bank_id": bank.id})
    if batch_size > n:
        raise SelectError(f"batch_size {batch_size} exceeds the bank size {n}",
                          {"batch_size": batch_size, "bank_size": n})
    m = min(pool_size, n)
    if batch_size > m:
        raise SelectError(f"batch_size {batch_size} exceeds pool_size {m}",
                          {"batch_size": batch_size, "pool_size": m})

    # One transaction: cursor claim, ticket and items commit together (a 2xx select is
    # durable; a failed one leaves the cursor where it was). On a prescored pool
    # (selection/prescore.py) nothing is scored here, and usually nothing drawn either;
    # otherwise the pool is scored inside the transaction, which holds the run's row
    # (PostgreSQL) or the write lock (SQLite) for that long.
    snapshots.wait_pending(run.id)  # a replica loading an announced version: take it
    snapshots.await_announced(run.id, run.model_version)  # before the claim: no lock held
    s = session
    start, step, version = _claim(s, run.id, m)
    scores = snapshots.take_scores(run.id, version, start, n, m, batch_size)
    if scores is not None:
        positions, used = scores.positions, scores.used
    else:
        positions, used = claim_pool(start, m, n, run.seed)
    if used > m:  # an epoch boundary: the top-up's counters are this claim's too
        _more(s, run.id, used - m)

    drawn = None if scores is None else scores.draw_for(step, batch_size)
    if drawn is not None:
        snapshots.note_drawn_ahead()
    elif scores is not None:
        drawn = draw(seed=run.seed, step=step, batch_size=batch_size, positions=positions,
                     logits=scores.logits, active=scores.active, top_p=scores.top_p,
                     temperature=scores.temperature, explore=scores.explore)
    else:
        version, drawn = _score_and_draw(run, bank, version, step, batch_size, positions,
                                         session_factory, files, snapshots)

    ticket_id = uuid.uuid4().hex
    s.connection().execute(_NEW_TICKET, {
        "id": ticket_id, "run_id": run.id, "step": step, "model_version": version,
        "pool_size": int(m), "pool_entropy": drawn.pool_entropy, "state": TicketState.ISSUED,
        "accepted": 0, "attempts": 0, "created_at": utcnow(),
        "idempotency_key": idempotency_key})
    insert_items(s, drawn.item_rows(ticket_id))
    s.commit()

    if drawn.problems_json is None:  # encoded after the commit: the lock is not held for it
        drawn = with_problems(drawn, files, session_factory, bank)
    return SelectResult(ticket_id, run.id, step, version, drawn.problems_json)


def _score_and_draw(run: Run, bank: Bank, version: int, step: int, batch_size: int,
                    positions, session_factory: sessionmaker[Session], files: BankFiles,
                    snapshots: SnapshotCache) -> tuple[int, Draw]:
    """Score the pool inline and draw from it; the version that scored it (a copy newer
    than the claim's may be cached, handed over since the claim: the ticket records it)."""
    version, strategy = snapshots.get_versioned(run, version)
    logits = pool_logits(strategy, session_factory, files, bank, positions)
    return version, draw(seed=run.seed, step=step, batch_size=batch_size, positions=positions,
                         logits=logits, active=strategy.active(), top_p=strategy.top_p,
                         temperature=strategy.temperature,
                         explore=float(strategy.explore_share))
