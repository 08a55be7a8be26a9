"""Applying a reported ticket, the domain half: the observations the strategy learns
from, and, in the caller's transaction, the writes that make the update one version —
the run's version and stats, the ticket applied, the checkpoint, the history point.

The worker (worker/updater.py) keeps what is about running it: the run lock, the cached
strategy, retries, the dead letter, the commit and the handover to selection.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from curator.bank import access
from curator.bank.files import BankFiles
from curator.core.tickets import TicketState
from curator.curation import step
from curator.curation.control import control_sums
from curator.curation.types import Observation, Strategy, UpdateStats
from curator.db.models import (
    Bank,
    Feedback,
    HistoryPoint,
    Run,
    Ticket,
    TicketItem,
    utcnow,
)
from curator.runs.selected_by import selected_counts
from curator.runs.strategy_store import write_checkpoint


class Overtaken(Exception):
    """Another worker applied this ticket (or moved the run) since this one read it."""


def observations(s: Session, files: BankFiles, session_factory: sessionmaker[Session],
                 bank: Bank, ticket_id: str,
                 category_field: str | None) -> tuple[list[Observation], float]:
    # Every item of the ticket (for the curator share), with its feedback if any.
    items = s.execute(
        select(TicketItem.problem_id, TicketItem.logit, TicketItem.propensity,
               TicketItem.source, Feedback.ticket_id.label("reported"), Feedback.utility,
               Feedback.utility_kind, Feedback.mean_reward, Feedback.mean_abs_advantage)
        .outerjoin(Feedback, (Feedback.ticket_id == TicketItem.ticket_id)
                   & (Feedback.problem_id == TicketItem.problem_id))
        .where(TicketItem.ticket_id == ticket_id).order_by(TicketItem.rank)).all()
    share = (sum(r.source == "curator" for r in items) / len(items)) if items else 0.0
    rows = [r for r in items if r.reported is not None]
    if not rows:
        return [], share
    positions = np.array([r.problem_id for r in rows], dtype=np.int64)
    vectors = access.embeddings(files, session_factory, bank, positions)
    cats = (access.categories(s, bank.id, positions, category_field)
            if category_field else None)
    return step.observations(rows, vectors, cats), share


def record_update(s: Session, *, run: Run, ticket: Ticket, bank: Bank, version: int,
                  strategy: Strategy, batch: list[Observation], stats: UpdateStats,
                  curator_share: float) -> None:
    """Write `version` of the run from `ticket`'s update, in `s`'s transaction (the caller
    commits). Overtaken when another worker got there first; NonFiniteState
    (strategy_store.py) when the state would hold a NaN or an infinity."""
    # Guarded writes, before anything else is written: only from the version this update
    # started from, only a ticket still reported. PostgreSQL's FOR UPDATE already
    # serialises workers; SQLite has no row locks, so with several worker processes two
    # may apply one ticket: the second finds a row count of 0 and steps back (its
    # checkpoint would collide).
    moved = s.execute(update(Run).where(Run.id == run.id, Run.model_version == version - 1)
                      .values(model_version=version, stats=run_stats(run.stats, batch))
                      ).rowcount
    taken = s.execute(update(Ticket).where(Ticket.id == ticket.id,
                                           Ticket.state == TicketState.REPORTED)
                      .values(state=TicketState.APPLIED, applied_at=utcnow())).rowcount
    if moved != 1 or taken != 1:
        raise Overtaken
    write_checkpoint(s, run.id, version, strategy)
    # mean_utility: the mean Û of the step's reported problems, as the trainer's feedback
    # made it (one unit everywhere: dashboard, client metrics, export); the strategy's
    # own windowed, scaled mean goes to extra.scaled_utility
    extra = dict(stats.extra) | control_sums(batch)
    if stats.mean_utility is not None:
        extra["scaled_utility"] = float(stats.mean_utility)
    s.add(HistoryPoint(run_id=run.id, ticket_id=ticket.id, step=ticket.step,
                       model_version=version, n_items=len(batch), loss=stats.loss,
                       mean_utility=mean_utility(batch), mean_reward=stats.mean_reward,
                       entropy=ticket.pool_entropy, curator_share=curator_share,
                       extra=extra, selected_by=selected_counts(s, bank.id, ticket.id)))


def mean_utility(batch: list[Observation]) -> float | None:
    values = [o.utility for o in batch if o.utility is not None and np.isfinite(o.utility)]
    return float(np.mean(values)) if values else None


def run_stats(stats: dict | None, batch: list[Observation]) -> dict:
    """The run's stats with this batch's utility kinds counted in (and a note when the
    trainer sends rewards without log-ratios)."""
    run_stats = dict(stats or {})
    kinds = [o.utility_kind for o in batch if o.utility_kind]
    if kinds:
        run_stats["utility_kinds"] = {
            k: run_stats.get("utility_kinds", {}).get(k, 0) + kinds.count(k)
            for k in set(kinds) | set(run_stats.get("utility_kinds", {}))}
        if "abs_advantage" in kinds:
            run_stats["utility_fallback"] = (
                "no log_ratios sent: utility falls back to mean |advantage|")
    return run_stats

