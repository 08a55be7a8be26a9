"""The worker loop: the same code runs as a task in the server and as `curator worker`."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from curator.db.models import Ticket
from curator.worker.queue import FeedbackQueue
from curator.worker.updater import Updater

log = logging.getLogger("curator.worker")


def reported_tickets(session_factory: sessionmaker[Session]) -> list[str]:
    with session_factory() as s:
        return list(s.scalars(select(Ticket.id).where(Ticket.state == "reported")
                              .order_by(Ticket.reported_at, Ticket.step)))


async def requeue_reported(session_factory: sessionmaker[Session], queue: FeedbackQueue) -> int:
    """Re-queue every ticket reported but not applied: the queue may have lost it."""
    ids = await asyncio.to_thread(reported_tickets, session_factory)
    for tid in ids:
        await queue.put(tid)
    if ids:
        log.info("re-queued %d reported ticket(s)", len(ids))
    return len(ids)


async def run_worker(queue: FeedbackQueue, updater: Updater, stop: asyncio.Event,
                     *, session_factory: sessionmaker[Session] | None = None,
                     requeue: bool = True) -> None:
    if requeue and session_factory is not None:
        await requeue_reported(session_factory, queue)
    while not stop.is_set():
        try:
            item = await queue.get(timeout=0.5)
        except Exception:
            log.exception("queue read failed; retrying")
            await asyncio.sleep(1.0)
            continue
        if item is None:
            continue
        msg_id, ticket_id = item
        try:
            result = await asyncio.to_thread(updater.apply, ticket_id)
        except Exception:
            log.exception("applying ticket %s failed; it stays reported and will be retried",
                          ticket_id)
            await asyncio.sleep(1.0)
            await queue.put(ticket_id)
            await queue.ack(msg_id)
            continue
        await queue.ack(msg_id)
        if not result.skipped:
            log.debug("applied %s → run %d v%d in %.1f ms", ticket_id, result.run_id,
                      result.model_version, result.seconds * 1e3)
