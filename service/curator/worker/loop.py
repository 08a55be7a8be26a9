"""The worker loop: the same code runs as a task in the server and as `curator worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.core.tickets import TicketState
from curator.core.versions import VersionChannel
from curator.db.models import Ticket, utcnow
from curator.worker.beats import BEAT_EVERY_S, Heartbeat
from curator.worker.queue import FeedbackQueue
from curator.worker.updater import Updater

log = logging.getLogger("curator.worker")


def reported_tickets(session_factory: sessionmaker[Session],
                     older_than_s: float | None = None) -> list[str]:
    with session_factory() as s:
        query = select(Ticket.id).where(Ticket.state == TicketState.REPORTED)
        if older_than_s is not None:
            cutoff = utcnow() - timedelta(seconds=older_than_s)
            query = query.where(Ticket.reported_at < cutoff)
        return list(s.scalars(query.order_by(Ticket.reported_at, Ticket.step)))


async def requeue_reported(session_factory: sessionmaker[Session], queue: FeedbackQueue,
                           older_than_s: float | None = None) -> int:
    """Re-queue every ticket reported but not applied: the queue may have lost it."""
    ids = await asyncio.to_thread(reported_tickets, session_factory, older_than_s)
    for tid in ids:
        await queue.put(tid)
    if ids:
        log.info("re-queued %d reported ticket(s)", len(ids))
    return len(ids)


def close_expired_partial(session_factory: sessionmaker[Session], ttl_s: float) -> list[str]:
    """Report, with the results they hold, tickets partly reported and older than the
    ticket TTL: they take no more results (410), and what a trainer got a 2xx for must
    still be applied. Returns their ids (to queue)."""
    if ttl_s <= 0:
        return []
    cutoff = utcnow() - timedelta(seconds=ttl_s)
    with session_factory() as s:
        ids = list(s.scalars(select(Ticket.id).where(
            Ticket.state == TicketState.ISSUED, Ticket.accepted > 0,
            Ticket.created_at < cutoff)))
        closed = [tid for tid in ids if s.execute(
            update(Ticket).where(Ticket.id == tid, Ticket.state == TicketState.ISSUED)
            .values(state=TicketState.REPORTED, reported_at=utcnow())).rowcount == 1]
        s.commit()
    if closed:
        log.info("closed %d partly reported ticket(s) past the ticket TTL", len(closed))
    return closed


async def _sweep(session_factory: sessionmaker[Session] | None, queue: FeedbackQueue,
                 stale_after_s: float, ticket_ttl_s: float = 0.0) -> None:
    """Re-queue tickets the queue lost (Redis restarted, or a put failed after the commit).

    Only when the queue looks empty, so a long but healthy backlog is not duplicated;
    duplicates are harmless anyway (an applied ticket is skipped).
    """
    if session_factory is None:
        return
    for tid in await asyncio.to_thread(close_expired_partial, session_factory, ticket_ttl_s):
        await queue.put(tid)
    if queue.lost_stream:
        queue.lost_stream = False
        await requeue_reported(session_factory, queue)
    elif await queue.depth() == 0:
        await requeue_reported(session_factory, queue, older_than_s=stale_after_s)


async def run_worker(queue: FeedbackQueue, updater: Updater, stop: asyncio.Event,
                     *, session_factory: sessionmaker[Session] | None = None,
                     requeue: bool = True, sweep_every_s: float = 5.0,
                     stale_after_s: float = 10.0, ticket_ttl_s: float = 0.0,
                     versions: VersionChannel | None = None) -> None:
    """Apply queued tickets until `stop`; with `versions` (a separate worker), announce
    each new curator version to the API replicas. With a database (`session_factory`): re-queue
    what was reported before start-up, sweep for lost and expired tickets, and keep a
    heartbeat row (worker/beats.py) that /readyz and /metrics read."""
    heartbeat = Heartbeat(session_factory) if session_factory is not None else None
    try:
        await _work(queue, updater, stop, session_factory, heartbeat, requeue=requeue,
                    sweep_every_s=sweep_every_s, stale_after_s=stale_after_s,
                    ticket_ttl_s=ticket_ttl_s, versions=versions)
    finally:
        if heartbeat is not None:
            await asyncio.to_thread(heartbeat.remove)


async def _work(queue: FeedbackQueue, updater: Updater, stop: asyncio.Event,
                session_factory: sessionmaker[Session] | None, heartbeat: Heartbeat | None,
                *, requeue: bool, sweep_every_s: float, stale_after_s: float,
                ticket_ttl_s: float, versions: VersionChannel | None) -> None:
    if heartbeat is not None:
        await asyncio.to_thread(heartbeat.beat)
    if requeue and session_factory is not None:
        delay = 0.5
        while not stop.is_set():  # a Redis or database blip at start-up: retry, not exit
            try:
                await requeue_reported(session_factory, queue)
                break
            except Exception:
                log.exception("re-queueing reported tickets failed; retrying in %.1f s",
                              delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 30.0)
    last_sweep = last_beat = time.monotonic()
    while not stop.is_set():
        if heartbeat is not None and time.monotonic() - last_beat > BEAT_EVERY_S:
            last_beat = time.monotonic()
            await asyncio.to_thread(heartbeat.beat)
        if time.monotonic() - last_sweep > sweep_every_s or queue.lost_stream:
            last_sweep = time.monotonic()
            try:
                await _sweep(session_factory, queue, stale_after_s, ticket_ttl_s)
            except Exception:
                log.exception("sweep for lost tickets failed; retrying later")
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
            try:
                await queue.put(ticket_id)
                await queue.ack(msg_id)
            except Exception:  # the sweep re-queues it from the database
                log.warning("could not re-queue ticket %s", ticket_id)
            continue
        try:
            await queue.ack(msg_id)
        except Exception:  # unacknowledged: redelivered, then skipped as already applied
            log.warning("could not acknowledge %s", msg_id)
        if result.skipped:
            continue
        if heartbeat is not None:
            heartbeat.applied += 1
        log.debug("applied %s → run %d v%d in %.1f ms", ticket_id, result.run_id,
                  result.model_version, result.seconds * 1e3)
        if versions is not None:
            try:
                await versions.announce(result.run_id, result.model_version,
                                        result.announcement)
            except Exception:  # replicas still see the version on their next select
                log.warning("could not announce run %d v%d", result.run_id,
                            result.model_version)
