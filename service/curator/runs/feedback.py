"""Feedback: validate against the ticket, keep each problem's result once, report the
ticket when it is complete.

The contract (docs/design.md §3). A ticket's results may come in several posts (a
trainer with several ranks, a retry after a partial failure). Each problem's result is
kept on its first arrival; an exact repeat is a replay (answered 2xx, `replayed`), the
same problem with different values is a conflict (409) and nothing of that post is kept.
The ticket is reported — queued for the worker, applied once — when every problem of it
has a result, or earlier if a post says `final` (apply with what it has). Past the
ticket TTL a partly reported ticket takes no more results (410) and is applied with what
it holds (here on the refused post, or by the worker's sweep). The queue only carries
ticket ids; these rows are the record the worker applies.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.core.errors import Clash, Expired, Invalid, Missing
from curator.core.tickets import TicketState
from curator.curation.utility import summarise_group
from curator.db.models import Feedback, Run, Ticket, TicketItem, utcnow

# What the feedback path accepts (refused with a 422 beyond): within these the
# advantages, Û = mean A·exp(ℓ) and the float32 statistics stay finite.
MAX_ABS_REWARD = 1e6
MAX_ABS_UTILITY = 1e6
MAX_ABS_LOG_RATIO = 30.0  # a length-normalised log π_new − log π_old per token


class FeedbackError(Invalid):
    """Results that do not fit their ticket; nothing was recorded."""


class FeedbackConflict(Clash):
    """A problem already has a different result in this ticket; nothing was recorded."""


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
    accepted: int  # results this post added
    state: str  # "partial" (waiting for more results), "reported" or "applied"
    replayed: bool  # the post added nothing: every result was already kept
    reported: int = 0  # results the ticket holds
    expected: int = 0  # problems in the ticket


def _public_state(ticket: Ticket) -> str:
    if ticket.state == TicketState.ISSUED:
        return "partial"
    return "applied" if ticket.state == TicketState.APPLIED else "reported"


def _age_s(ticket: Ticket) -> float:
    created = ticket.created_at
    if created.tzinfo is None:  # SQLite returns naive UTC datetimes
        created = created.replace(tzinfo=timezone.utc)
    return (utcnow() - created).total_seconds()


def _same(row: Feedback, r: ResultRecord) -> bool:
    """Whether a kept row is exactly this result (what the trainer sent, not what the
    service computed from it)."""
    sent_utility = row.utility if row.utility_kind == "direct" else None
    return (sent_utility == r.utility and row.rewards == r.rewards
            and row.log_ratios == r.log_ratios)


def record_feedback(*, session_factory: sessionmaker[Session], run: Run, ticket_id: str,
                    results: list[ResultRecord], requires_rewards: bool,
                    ttl_s: float = 0.0, final: bool = False) -> Receipt:
    with session_factory() as s:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None or ticket.run_id != run.id:
            raise TicketNotFound(f"ticket {ticket_id!r} not found for run {run.id}",
                                 {"ticket_id": ticket_id})
        items = set(s.scalars(select(TicketItem.problem_id)
                              .where(TicketItem.ticket_id == ticket_id)))
        _check_results(results, items, run.strategy if requires_rewards else None)
        rows = {r.problem_id: _feedback_row(ticket_id, r) for r in results}
        s.rollback()  # end the read: the write below starts its own transaction

        # Lock the ticket's row first (PostgreSQL holds it to the commit; SQLite takes
        # its write lock), so concurrent posts for one ticket go one after the other and
        # each sees what the previous kept.
        open_ = s.execute(update(Ticket).where(Ticket.id == ticket_id,
                                               Ticket.state == TicketState.ISSUED)
                          .values(accepted=Ticket.accepted)).rowcount == 1
        ticket = s.get(Ticket, ticket_id, populate_existing=True)
        kept = {f.problem_id: f for f in s.scalars(
            select(Feedback).where(Feedback.ticket_id == ticket_id))}
        clashes = sorted(pid for pid, r in zip(rows, results)
                         if pid in kept and not _same(kept[pid], r))
        if clashes:
            s.rollback()
            raise FeedbackConflict(
                "these problems already have a different result in this ticket (the "
                "first one is kept); nothing of this post was recorded",
                {"ticket_id": ticket_id, "problem_ids": clashes[:100]})
        new = [row for pid, row in rows.items() if pid not in kept]
        if not open_:  # reported or applied already: only exact repeats are answered 2xx
            s.rollback()
            if new:
                raise FeedbackConflict(
                    f"ticket {ticket_id!r} is already {_public_state(ticket)}: results "
                    "for its other problems are no longer taken (select again)",
                    {"ticket_id": ticket_id, "problem_ids": sorted(r["problem_id"]
                                                                   for r in new)[:100]})
            return Receipt(ticket_id, 0, _public_state(ticket), True, len(kept), len(items))
        if ttl_s > 0 and (age := _age_s(ticket)) > ttl_s:
            close = bool(kept)  # a partly reported ticket is applied with what it holds
            if close:
                s.execute(update(Ticket).where(Ticket.id == ticket_id).values(
                    state=TicketState.REPORTED, reported_at=utcnow()))
                s.commit()
            else:
                s.rollback()
            raise TicketExpired(
                f"ticket {ticket_id!r} expired {age - ttl_s:.0f} s ago (tickets live "
                f"{ttl_s:.0f} s); these results were not kept" +
                (f"; the {len(kept)} kept earlier are applied" if close else
                 "; select again"),
                {"ticket_id": ticket_id, "age_s": round(age, 1), "closed": close,
                 "reported": len(kept)})
        total = len(kept) + len(new)
        if final and total == 0:
            s.rollback()
            raise FeedbackError("`final` with no results: nothing to apply",
                                {"ticket_id": ticket_id})
        if new:
            s.execute(Feedback.__table__.insert(), new)
        done = total == len(items) or (final and total > 0)
        values: dict[str, Any] = {"accepted": total}
        if done:
            values |= {"state": TicketState.REPORTED, "reported_at": utcnow()}
        s.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))
        s.commit()
        return Receipt(ticket_id, len(new), "reported" if done else "partial",
                       not new and not done, total, len(items))


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
    alone = [r.problem_id for r in results
             if r.utility is None and r.rewards is not None and len(r.rewards) < 2]
    if alone:
        raise FeedbackError("one rollout has no advantage (GRPO's signal is the spread of a "
                            "group): send the group's rewards (G ≥ 2), or `utility`",
                            {"problem_ids": alone[:100]})
    for r in results:
        _check_bounds(r)
    if needs_rewards_for is not None:
        missing = [r.problem_id for r in results if r.rewards is None]
        if missing:
            raise FeedbackError(
                f"strategy {needs_rewards_for!r} learns from per-rollout rewards: send "
                "`rewards`", {"problem_ids": missing[:100]})


def _check_bounds(r: ResultRecord) -> None:
    """Finite and within the documented bounds, so nothing downstream overflows."""
    def bad(values: list[float] | None, bound: float) -> bool:
        return values is not None and not all(
            math.isfinite(v) and abs(v) <= bound for v in values)

    for name, values, bound in (("utility", None if r.utility is None else [r.utility],
                                 MAX_ABS_UTILITY),
                                ("rewards", r.rewards, MAX_ABS_REWARD),
                                ("log_ratios", r.log_ratios, MAX_ABS_LOG_RATIO)):
        if bad(values, bound):
            raise FeedbackError(f"`{name}` must be finite with |value| ≤ {bound:g}",
                                {"problem_id": r.problem_id, "field": name, "bound": bound})
    if r.log_ratios is not None and r.rewards is not None and \
            len(r.log_ratios) != len(r.rewards):
        raise FeedbackError("one log-ratio per rollout: `log_ratios` and `rewards` differ "
                            "in length", {"problem_id": r.problem_id})


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
        select(Run.step, Run.model_version, Run.stats, *(count(st) for st in _STATES),
               select(func.count()).select_from(Ticket)
               .where(Ticket.run_id == run_id, Ticket.state == TicketState.ISSUED,
                      Ticket.accepted > 0).scalar_subquery())
        .where(Run.id == run_id)).one()
    n = dict(zip(_STATES, row[3:-1], strict=True))
    counts = {"issued": sum(n.values()), "reported": n["reported"] + n["applied"] + n["failed"],
              "applied": n["applied"], "failed": n["failed"], "partial": row[-1]}
    return row, counts


