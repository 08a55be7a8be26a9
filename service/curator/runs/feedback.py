"""Feedback: validate against the ticket, store rows and mark the ticket reported atomically.

The queue only carries ticket ids; these rows are the record the worker applies. A
repeat of feedback for a ticket already reported is answered with the first receipt
and changes nothing (first write wins).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.curation.utility import summarise_group
from curator.db.models import Feedback, Run, Ticket, TicketItem, utcnow
from curator.errors import Expired, Invalid, Missing
from curator.tickets import TicketState


class FeedbackError(Invalid):
    """Results that do not fit their ticket; nothing was recorded."""


class TicketNotFound(Missing):
    """The ticket does not exist, or belongs to another run."""


class TicketExpired(Expired):
    """The ticket outlived the service's ticket TTL before its feedback came."""


@dataclass
class ResultRecord:
    problem_id: int
    utility: float | None = None
    rewards: list[float] | None = None
    log_ratios: list[float] | None = None


@dataclass
class Receipt:
    ticket_id: str
    accepted: int
    state: str
    replayed: bool


def _receipt(session: Session, ticket: Ticket) -> Receipt:
    state = TicketState.APPLIED if ticket.state == TicketState.APPLIED else TicketState.REPORTED
    return Receipt(ticket.id, ticket.accepted, state, True)


def record_feedback(*, session_factory: sessionmaker[Session], run: Run, ticket_id: str,
                    results: list[ResultRecord], requires_rewards: bool,
                    ttl_s: float = 0.0) -> Receipt:
    with session_factory() as s:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None or ticket.run_id != run.id:
            raise TicketNotFound(f"ticket {ticket_id!r} not found for run {run.id}",
                                 {"ticket_id": ticket_id})
        if ticket.state != TicketState.ISSUED:
            return _receipt(s, ticket)
        if ttl_s > 0:
            created = ticket.created_at
            if created.tzinfo is None:  # SQLite returns naive UTC datetimes
                created = created.replace(tzinfo=timezone.utc)
            age = (utcnow() - created).total_seconds()
            if age > ttl_s:
                raise TicketExpired(f"ticket {ticket_id!r} expired {age - ttl_s:.0f} s ago "
                                    f"(tickets live {ttl_s:.0f} s); select again",
                                    {"ticket_id": ticket_id, "age_s": round(age, 1)})

        items = set(s.scalars(select(TicketItem.problem_id)
                              .where(TicketItem.ticket_id == ticket_id)))
        _check_results(results, items, run.strategy if requires_rewards else None)
        rows = [_feedback_row(ticket_id, r) for r in results]

        # The state transition is the idempotency guard: exactly one request wins it.
        won = s.execute(
            update(Ticket).where(Ticket.id == ticket_id, Ticket.state == TicketState.ISSUED)
            .values(state=TicketState.REPORTED, reported_at=utcnow(), accepted=len(rows))
        ).rowcount
        if won != 1:
            s.rollback()
            return _receipt(s, s.get(Ticket, ticket_id, populate_existing=True))
        s.execute(Feedback.__table__.insert(), rows)
        s.commit()
        return Receipt(ticket_id, len(rows), TicketState.REPORTED, False)


def _check_results(results: list[ResultRecord], items: set[int],
                   needs_rewards_for: str | None) -> None:
    """Every result names a problem of the ticket, once; rewards where the strategy
    (named by `needs_rewards_for`) learns from them."""
    ids = [r.problem_id for r in results]
    unknown = sorted({i for i in ids if i not in items})
    if unknown:
        raise FeedbackError("results name problems that are not in this ticket",
                            {"problem_ids": unknown[:100]})
    repeated = sorted(i for i, c in Counter(ids).items() if c > 1)
    if repeated:
        raise FeedbackError("a problem appears more than once in results",
                            {"problem_ids": repeated[:100]})
    if needs_rewards_for is not None:
        missing = [r.problem_id for r in results if r.rewards is None]
        if missing:
            raise FeedbackError(
                f"strategy {needs_rewards_for!r} learns from per-rollout rewards: send "
                "`rewards`", {"problem_ids": missing[:100]})


def _feedback_row(ticket_id: str, r: ResultRecord) -> dict:
    """One feedback row: the utility as sent, or computed from the group's rewards."""
    mean_reward = mean_abs_adv = None
    utility, kind = r.utility, "direct" if r.utility is not None else None
    if r.rewards is not None:
        u, k, mean_reward, mean_abs_adv = summarise_group(r.rewards, r.log_ratios)
        if utility is None:
            utility, kind = u, k
        if not math.isfinite(utility):  # exp() of a huge log-ratio
            raise FeedbackError("log_ratios too large: the utility overflows",
                                {"problem_id": r.problem_id})
    return {"ticket_id": ticket_id, "problem_id": r.problem_id, "utility": utility,
            "utility_kind": kind, "rewards": r.rewards, "log_ratios": r.log_ratios,
            "mean_reward": mean_reward, "mean_abs_advantage": mean_abs_adv,
            "created_at": utcnow()}


_STATES = tuple(TicketState)


def run_snapshot(session: Session, run_id: int) -> tuple[Any, dict[str, int]]:
    """(step, model_version, stats) of the run and its ticket counts, read by ONE
    statement: the worker commits "ticket applied" and "model version + 1" together, so
    two separate reads could see one without the other."""
    def count(state: str) -> Any:
        return (select(func.count()).select_from(Ticket)
                .where(Ticket.run_id == run_id, Ticket.state == state).scalar_subquery())

    row = session.execute(
        select(Run.step, Run.model_version, Run.stats, *(count(st) for st in _STATES))
        .where(Run.id == run_id)).one()
    n = dict(zip(_STATES, row[3:], strict=True))
    counts = {"issued": sum(n.values()), "reported": n["reported"] + n["applied"] + n["failed"],
              "applied": n["applied"], "failed": n["failed"]}
    return row, counts


