"""The in-run control report of a run (curation/control.py) from its logged tickets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from curator.curation.control import (
    Estimate,
    GroupSummary,
    difference,
    summarise,
    uniform_on_pools,
)
from curator.db.models import Feedback, Ticket, TicketItem


@dataclass(frozen=True)
class ValueReport:
    run_id: int
    window: int  # the last `window` tickets with feedback (0: all)
    tickets: int  # tickets in the window
    curator: GroupSummary
    explore: GroupSummary
    difference: Estimate  # curator − explore, mean Û
    uniform_estimate: Estimate  # uniform selection's mean Û on the same pools
    wasted_ratio: float | None  # curator's wasted-per-useful over the explore items'
    utility_kinds: dict[str, int] = field(default_factory=dict)


def value_report(session: Session, run_id: int, window: int = 50) -> ValueReport:
    """Curator items against the explore control over the run's last `window` reported
    tickets (all of them for 0)."""
    reported = (select(Ticket.id).where(Ticket.run_id == run_id,
                                        Ticket.reported_at.is_not(None))
                .order_by(Ticket.step.desc()))
    if window > 0:
        reported = reported.limit(window)
    ids = list(session.scalars(reported))
    # every item of those tickets; feedback where the trainer reported it
    rows = session.execute(
        select(TicketItem.ticket_id, TicketItem.source, Ticket.pool_size, Feedback.utility,
               Feedback.utility_kind, Feedback.mean_reward, Feedback.mean_abs_advantage,
               Feedback.rewards)
        .join(Ticket, Ticket.id == TicketItem.ticket_id)
        .outerjoin(Feedback, and_(Feedback.ticket_id == TicketItem.ticket_id,
                                  Feedback.problem_id == TicketItem.problem_id))
        .where(TicketItem.ticket_id.in_(ids))).all() if ids else []
    per_ticket: dict[str, tuple[list, list, int]] = {}
    for r in rows:
        cur, exp_, _ = per_ticket.setdefault(r.ticket_id, ([], [], r.pool_size))
        u = np.nan if r.utility is None else r.utility
        (cur if r.source == "curator" else exp_).append(u)
    rows = [r for r in rows if r.utility is not None]

    def column(rows_, k, default=np.nan):
        return np.array([default if r[k] is None else r[k] for r in rows_], dtype=np.float64)

    parts = {}
    for source in ("curator", "explore"):
        mine = [r for r in rows if r.source == source]
        zero = np.array([np.nan if r.rewards is None else float(r.mean_abs_advantage == 0)
                         for r in mine], dtype=np.float64)
        rollouts = np.array([len(r.rewards) if r.rewards else 0 for r in mine], dtype=np.int64)
        parts[source] = (mine, summarise(column(mine, 3), zero, column(mine, 5), rollouts))
    kinds: dict[str, int] = {}
    for r in rows:
        if r.utility_kind:
            kinds[r.utility_kind] = kinds.get(r.utility_kind, 0) + 1
    return ValueReport(
        run_id=run_id, window=window, tickets=len(ids),
        curator=parts["curator"][1], explore=parts["explore"][1],
        difference=difference(column(parts["curator"][0], 3), column(parts["explore"][0], 3)),
        uniform_estimate=uniform_on_pools(list(per_ticket.values())),
        wasted_ratio=_ratio(parts["curator"][1].wasted_per_useful,
                            parts["explore"][1].wasted_per_useful),
        utility_kinds=kinds)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
