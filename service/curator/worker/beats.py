"""Worker heartbeats in the database: a worker that runs as its own process (compose's
`worker`, `curator worker`) is visible to every API replica's /readyz and /metrics.

Each worker process refreshes one `worker_beats` row every few seconds and deletes it on
a clean stop; a row older than `STALE_S` is a worker that died (or cannot reach the
database). The apply lag is read beside it: the age of the oldest ticket reported and not
yet applied, which grows whenever no worker keeps up.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.core.tickets import TicketState
from curator.db.models import Ticket, WorkerBeat, utcnow

log = logging.getLogger("curator.worker")

BEAT_EVERY_S = 2.0
STALE_S = 15.0  # no beat for this long: the worker is taken for dead
FORGET_S = 24 * 3600.0  # rows of workers gone this long are deleted by the next beat


class Heartbeat:
    """This worker process's row. `beat` is cheap (one UPDATE) and never raises: a
    database outage must not stop the worker, which retries everything else too."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sf = session_factory
        self.worker_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.applied = 0
        self._registered = False
        self._failing = False

    def beat(self) -> bool:
        try:
            with self._sf() as s:
                now = utcnow()
                if self._registered:
                    self._registered = s.execute(
                        update(WorkerBeat).where(WorkerBeat.worker_id == self.worker_id)
                        .values(beat_at=now, applied=self.applied)).rowcount == 1
                if not self._registered:  # first beat, or the row was swept meanwhile
                    s.add(WorkerBeat(worker_id=self.worker_id, host=socket.gethostname()[:200],
                                     pid=os.getpid(), started_at=now, beat_at=now,
                                     applied=self.applied))
                    s.execute(delete(WorkerBeat).where(
                        WorkerBeat.beat_at < now - timedelta(seconds=FORGET_S)))
                    self._registered = True
                s.commit()
            self._failing = False
            return True
        except Exception as exc:
            if self._registered or not self._failing:  # once per outage, not every beat
                log.warning("worker heartbeat could not be written (%s); retrying",
                            str(exc).splitlines()[0])
            self._registered = False
            self._failing = True
            return False

    def remove(self) -> None:
        try:
            with self._sf() as s:
                s.execute(delete(WorkerBeat).where(WorkerBeat.worker_id == self.worker_id))
                s.commit()
        except Exception as exc:
            log.warning("worker heartbeat row could not be removed (%s)",
                        str(exc).splitlines()[0])


@dataclass(frozen=True)
class WorkerStatus:
    alive: int  # workers whose last beat is newer than STALE_S
    last_beat_age_s: float | None  # since the newest beat of any worker; None: none ever
    lag_s: float  # age of the oldest reported, unapplied ticket; 0 when none is waiting
    waiting: int  # tickets reported and not yet applied


def worker_status(session: Session, stale_s: float = STALE_S) -> WorkerStatus:
    now = utcnow()
    newest = session.scalar(select(func.max(WorkerBeat.beat_at)))
    alive = session.scalar(select(func.count()).select_from(WorkerBeat).where(
        WorkerBeat.beat_at >= now - timedelta(seconds=stale_s))) or 0
    oldest, waiting = session.execute(
        select(func.min(Ticket.reported_at), func.count())
        .where(Ticket.state == TicketState.REPORTED)).one()
    return WorkerStatus(alive=int(alive),
                        last_beat_age_s=None if newest is None else _age(now, newest),
                        lag_s=0.0 if oldest is None else max(0.0, _age(now, oldest)),
                        waiting=int(waiting))


def _age(now, then) -> float:
    if then.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
        then = then.replace(tzinfo=now.tzinfo)
    return (now - then).total_seconds()
