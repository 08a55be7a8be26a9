"""The numbers behind the admin endpoints: distribution, history, run listing.

The distribution is the strategy's q = softmax(z / τ) over a scored set: the whole bank
when it holds at most `sample` problems, else a uniform sample of that size drawn with a
seed fixed per bank, so repeated calls (and different runs on the same bank) score the
same problems. There is no stored per-step distribution over the bank; the history's
"selected share by field" is the share of each metadata value among the problems the
run actually selected at that step (its ticket items), read from the per-ticket counts
the worker records with each history point (`history.selected_by`, see
curator/runs/selected_by.py); points recorded before those existed are counted from their
ticket items.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker, undefer

from curator.admin.schemas import (
    DistributionPublic,
    GroupMass,
    HistoryPage,
    HistoryPointPublic,
    MassBy,
    ProblemVisit,
    ProblemVisits,
    QueueState,
    RunStatus,
    RunSummary,
    ScoreHistogram,
    ScoreStats,
    TopProblem,
)
from curator.bank import access
from curator.bank.files import BankFiles
from curator.core.tickets import TicketState
from curator.curation import step
from curator.curation.sampler import entropy, softmax
from curator.curation.types import Strategy
from curator.db.models import Bank, Feedback, HistoryPoint, Problem, Run, Ticket, TicketItem
from curator.runs.selected_by import OTHER_VALUE, field_counts, group_value

PROMPT_CHARS = 280
_IN_CHUNK = 2000  # bound on IN-list parameters per query (SQLite and PostgreSQL)
_FIELDS_PROBE = 500  # problems whose whole metadata is read to list the bank's fields
_SAMPLE_SEED = 0x5C0DE  # with the bank id: the same scored sample for every run of a bank


def _chunks(items: Sequence[int], size: int = _IN_CHUNK) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield [int(x) for x in items[i:i + size]]


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=timezone.utc)
    return ts


def scored_positions(bank: Bank, sample: int) -> np.ndarray:
    """The bank positions to score: all of them, or a fixed uniform sample (sorted)."""
    n = int(bank.size)
    if n <= sample:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([_SAMPLE_SEED, bank.id, n])
    return np.sort(rng.choice(n, size=sample, replace=False)).astype(np.int64)


def queue_states(*, session: Session, run_ids: Sequence[int]) -> dict[int, QueueState]:
    """Ticket counts and queue lag per run, two grouped queries for all runs."""
    counts: dict[int, dict[str, int]] = {rid: {} for rid in run_ids}
    oldest: dict[int, datetime | None] = {}
    last: dict[int, datetime | None] = {}
    issued_last: dict[int, datetime | None] = {}
    for chunk in _chunks(list(run_ids)):
        for rid, state, n in session.execute(
                select(Ticket.run_id, Ticket.state, func.count())
                .where(Ticket.run_id.in_(chunk)).group_by(Ticket.run_id, Ticket.state)):
            counts[rid][state] = n
        for rid, old, new, made in session.execute(
                select(Ticket.run_id,
                       func.min(case((Ticket.state == TicketState.REPORTED, Ticket.reported_at))),
                       func.max(Ticket.applied_at), func.max(Ticket.created_at))
                .where(Ticket.run_id.in_(chunk)).group_by(Ticket.run_id)):
            oldest[rid], last[rid] = _aware(old), _aware(new)
            issued_last[rid] = _aware(made)
    now = datetime.now(timezone.utc)
    out = {}
    for rid in run_ids:
        c = counts[rid]
        applied = c.get(TicketState.APPLIED, 0)
        reported = c.get(TicketState.REPORTED, 0) + applied
        issued = c.get(TicketState.ISSUED, 0) + reported
        old = oldest.get(rid)
        out[rid] = QueueState(
            issued=issued, reported=reported, applied=applied, pending=reported - applied,
            outstanding=issued - reported,
            lag_seconds=max(0.0, (now - old).total_seconds()) if old else 0.0,
            last_applied_at=last.get(rid),
            idle_seconds=_since(now, last.get(rid), issued_last.get(rid)))
    return out


def _since(now: datetime, *moments: datetime | None) -> float | None:
    """Seconds since the latest of `moments` (None when there is none)."""
    known = [m for m in moments if m is not None]
    return max(0.0, (now - max(known)).total_seconds()) if known else None


STALE_AFTER_S = 300.0  # feedback waiting this long to be applied: no worker is keeping up
FINISHED_AFTER_S = 120.0  # no select and no apply for this long: the trainer has stopped


def run_status(run: Run, queue: QueueState) -> RunStatus:
    if run.revoked:
        return "revoked"
    if queue.issued == 0:
        return "new"
    if queue.pending:
        # feedback reported, the worker has not applied it yet — for minutes: stale
        return "stale" if queue.lag_seconds > STALE_AFTER_S else "training"
    quiet = queue.idle_seconds is not None and queue.idle_seconds > FINISHED_AFTER_S
    if queue.outstanding:
        # batches handed out, not reported yet; with nothing happening for minutes the
        # trainer has stopped (a loader's prefetched batch is never reported)
        return "finished" if quiet else "waiting"
    return "finished" if quiet else "idle"


def _point(h: HistoryPoint, pool_size: int | None) -> HistoryPointPublic:
    ratio = None
    if h.entropy is not None and pool_size:
        ratio = h.entropy / math.log(pool_size) if pool_size > 1 else 1.0
    share = h.curator_share
    return HistoryPointPublic(
        step=h.step, model_version=h.model_version, n_items=h.n_items, loss=h.loss,
        mean_utility=h.mean_utility, mean_reward=h.mean_reward, entropy=h.entropy,
        entropy_ratio=ratio, pool_size=pool_size, curator_share=share,
        explore_share=None if share is None else 1.0 - share,
        applied_at=_aware(h.created_at), extra=dict(h.extra or {}))


def run_summaries(*, session: Session, run_ids: Sequence[int] | None = None) -> list[RunSummary]:
    """Every run (or the given ones, in that order) with its status, queue and last point."""
    query = select(Run, Bank.name, Bank.size).join(Bank, Bank.id == Run.bank_id)
    if run_ids is not None:
        query = query.where(Run.id.in_([int(r) for r in run_ids]))
    rows = session.execute(query.order_by(Run.id)).all()
    ids = [run.id for run, _, _ in rows]
    queues = queue_states(session=session, run_ids=ids)
    latest = select(HistoryPoint.run_id, func.max(HistoryPoint.step).label("step"))
    if run_ids is not None:
        latest = latest.where(HistoryPoint.run_id.in_(ids))
    latest = latest.group_by(HistoryPoint.run_id).subquery()
    last = {h.run_id: _point(h, pool) for h, pool in session.execute(
        select(HistoryPoint, Ticket.pool_size)
        .join(latest, (latest.c.run_id == HistoryPoint.run_id)
              & (latest.c.step == HistoryPoint.step))
        .outerjoin(Ticket, Ticket.id == HistoryPoint.ticket_id))}
    out = {run.id: RunSummary(
        run_id=run.id, name=run.name, bank_id=run.bank_id, bank_name=bank_name,
        bank_size=bank_size, strategy=run.strategy, params=run.params or {}, seed=run.seed,
        step=run.step, model_version=run.model_version, revoked=run.revoked,
        created_at=_aware(run.created_at), status=run_status(run, queues[run.id]),
        queue=queues[run.id], last=last.get(run.id)) for run, bank_name, bank_size in rows}
    order = ids if run_ids is None else [int(r) for r in run_ids if int(r) in out]
    return [out[r] for r in order]


def history(*, session: Session, run: Run, after: int | None = None, limit: int = 1000,
            by: str | None = None, max_values: int = 12, tail: bool = False) -> HistoryPage:
    """Per-step series recorded by the worker, ordered by step.

    `after` pages forward (steps > after); `tail` instead returns the last `limit` points.
    With `by`, each point carries the share of each metadata value among the step's
    selected problems; values outside the `max_values` largest overall become "(other)".
    A field that none of the page's selected problems carries gives empty shares.
    """
    query = (select(HistoryPoint, Ticket.pool_size)
             .outerjoin(Ticket, Ticket.id == HistoryPoint.ticket_id)
             .where(HistoryPoint.run_id == run.id))
    if by is not None:
        query = query.options(undefer(HistoryPoint.selected_by))
    if after is not None:
        query = query.where(HistoryPoint.step > after)
    if tail:
        rows = session.execute(query.order_by(HistoryPoint.step.desc()).limit(limit)).all()[::-1]
        more = False
    else:
        rows = session.execute(query.order_by(HistoryPoint.step).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
    total = session.scalar(select(func.count()).select_from(HistoryPoint)
                           .where(HistoryPoint.run_id == run.id)) or 0
    points = [_point(h, pool) for h, pool in rows]
    values: list[str] = []
    if by is not None and rows:
        per_ticket, values = _selected_shares(
            session, run.bank_id, [(h.ticket_id, h.selected_by) for h, _ in rows], by,
            max_values)
        for point, (h, _) in zip(points, rows):
            point.selected_by = per_ticket.get(h.ticket_id, {})
    return HistoryPage(run_id=run.id, by=by, values=values, points=points, total=total,
                       next_after=points[-1].step if more else None)


def _joined_counts(session: Session, bank_id: int, ticket_ids: list[str],
                   field: str) -> tuple[dict[str, Counter[str]], bool]:
    """Per-ticket value counts from the tickets' items joined with their problems (points
    without a stored aggregate), and whether any of those problems carries the field."""
    counts: dict[str, Counter[str]] = {}
    known = False
    for i in range(0, len(ticket_ids), _IN_CHUNK):
        chunk = ticket_ids[i:i + _IN_CHUNK]
        for tid, meta in session.execute(
                select(TicketItem.ticket_id, Problem.meta)
                .join(Problem, (Problem.bank_id == bank_id)
                      & (Problem.position == TicketItem.problem_id))
                .where(TicketItem.ticket_id.in_(chunk))):
            known = known or field in (meta or {})
            counts.setdefault(tid, Counter())[group_value(meta, field)] += 1
    return counts, known


def _selected_shares(session: Session, bank_id: int,
                     points: list[tuple[str, dict[str, Any] | None]], field: str,
                     max_values: int) -> tuple[dict[str, dict[str, float]], list[str]]:
    counts: dict[str, Counter[str]] = {}
    known = False
    missing = []
    for tid, aggregate in points:
        found = field_counts(aggregate, field)
        if found is None:
            missing.append(tid)
        elif found[0]:
            counts[tid] = found[0]
            known = known or found[1]
    if missing:
        joined, joined_known = _joined_counts(session, bank_id, missing, field)
        counts.update(joined)
        known = known or joined_known
    if not known:  # no selected problem on the page has the field: nothing to share out
        return {}, []
    overall: Counter[str] = Counter()
    for c in counts.values():
        total = sum(c.values())
        overall.update({k: v / total for k, v in c.items() if k != OTHER_VALUE})
    ranked = sorted(overall, key=lambda k: (-overall[k], k))
    keep = set(ranked[:max_values])
    shares = {}
    other = False
    for tid, c in counts.items():
        total = sum(c.values())
        row: dict[str, float] = {}
        for k, v in c.items():
            key = k if k in keep else OTHER_VALUE
            other = other or key == OTHER_VALUE
            row[key] = row.get(key, 0.0) + v / total
        shares[tid] = row
    values = ranked[:max_values] + ([OTHER_VALUE] if other else [])
    return shares, values


def _top_problems(session: Session, bank_id: int, positions: np.ndarray, logits: np.ndarray,
                  q: np.ndarray, top: int) -> list[TopProblem]:
    """The `top` highest-scored problems, with what a person needs to recognise them."""
    order = np.argsort(-logits, kind="stable")[:top]
    rows = {r.position: r for r in session.execute(
        select(Problem.position, Problem.external_id, Problem.prompt, Problem.meta)
        .where(Problem.bank_id == bank_id,
               Problem.position.in_([int(positions[i]) for i in order])))}
    out = []
    for rank, i in enumerate(order):
        r = rows[int(positions[i])]
        out.append(TopProblem(rank=rank + 1, problem_id=int(positions[i]),
                              external_id=r.external_id, prompt=r.prompt[:PROMPT_CHARS],
                              metadata=r.meta or {}, score=float(logits[i]),
                              probability=float(q[i])))
    return out


def _mass_by(by: str, labels: list[str], q: np.ndarray) -> MassBy:
    """q's mass per value of the field `by` (`labels`: each scored problem's group),
    beside each value's uniform share."""
    mass: dict[str, float] = {}
    count: Counter[str] = Counter(labels)
    for label, p in zip(labels, q):
        mass[label] = mass.get(label, 0.0) + float(p)
    n = len(labels)
    groups = [GroupMass(value=k, mass=mass[k], count=count[k], uniform=count[k] / n)
              for k in sorted(mass, key=lambda k: (-mass[k], k))]
    return MassBy(field=by, groups=groups)


def distribution(*, session: Session, session_factory: sessionmaker[Session], run: Run,
                 bank: Bank, strategy: Strategy, files: BankFiles, queue: QueueState,
                 sample: int = 20_000, by: str | None = None, top: int = 20,
                 bins: int = 20) -> DistributionPublic:
    """The strategy's current distribution over the bank (see the module docstring)."""
    positions = scored_positions(bank, sample)
    n = int(positions.size)
    base = dict(run_id=run.id, strategy=run.strategy, model_version=run.model_version,
                active=bool(strategy.active()), temperature=float(strategy.temperature),
                top_p=float(strategy.top_p), bank_size=int(bank.size), n_scored=n,
                sampled=n < bank.size, queue=queue)
    if n == 0:
        return DistributionPublic(**base, entropy=None, max_entropy=None, entropy_ratio=None,
                                  effective_support=None, effective_share=None, top=[],
                                  mass_by=None, fields=[], scores=None, histogram=None)

    # one field at a time, extracted by the database (not 20,000 whole metadata objects)
    need = list(dict.fromkeys(f for f in (by, strategy.category_field) if f))
    scope = None if n == bank.size else positions
    values = {f: access.field_values(session, bank.id, scope, f) for f in need}

    def column(field: str) -> list[Any]:
        found = values[field]
        return [found.get(p) for p in positions.tolist()]

    categories = None
    if strategy.category_field:
        categories = [access.as_category(v) for v in column(strategy.category_field)]
    logits = step.score(strategy, positions,
                        lambda p: access.embeddings(files, session_factory, bank, p), categories)
    q = softmax(logits, strategy.temperature) if base["active"] else np.full(n, 1.0 / n)

    h = entropy(q)
    max_h = math.log(n)
    support = math.exp(h)

    top_items = _top_problems(session, bank.id, positions, logits, q, top)
    mass_by = (_mass_by(by, [group_value({by: v}, by) for v in column(by)], q)
               if by else None)

    probe = access.metadata(session, bank.id, positions[:_FIELDS_PROBE].tolist())
    fields = sorted({k for m in probe.values() for k in m} | {f for f in need if values[f]})

    counts, edges = np.histogram(logits, bins=bins)
    bin_of = np.clip(np.searchsorted(edges, logits, side="right") - 1, 0, bins - 1)
    bin_mass = np.bincount(bin_of, weights=q, minlength=bins)
    return DistributionPublic(
        **base, entropy=h, max_entropy=max_h, entropy_ratio=h / max_h if n > 1 else 1.0,
        effective_support=support, effective_share=support / n, top=top_items,
        mass_by=mass_by, fields=fields,
        scores=ScoreStats(min=float(logits.min()), max=float(logits.max()),
                          mean=float(logits.mean()), std=float(logits.std())),
        histogram=ScoreHistogram(edges=[float(e) for e in edges],
                                 counts=[int(c) for c in counts],
                                 mass=[float(m) for m in bin_mass]))


def problem_visits(*, session: Session, run: Run, problem_id: int,
                   limit: int = 200) -> ProblemVisits | None:
    """One problem of the run's bank: what it is, and each time the run selected it (the
    newest `limit`): step, version, source, logit, propensity, and what the trainer
    reported (Û, rewards). Reads the run's ticket items (no per-problem index: a
    drill-down, not a hot path)."""
    problem = session.get(Problem, (run.bank_id, problem_id))
    if problem is None:
        return None
    rows = session.execute(
        select(Ticket.step, Ticket.id, Ticket.model_version, TicketItem.source,
               TicketItem.logit, TicketItem.propensity, Feedback.utility,
               Feedback.utility_kind, Feedback.mean_reward, Feedback.rewards)
        .join(TicketItem, TicketItem.ticket_id == Ticket.id)
        .outerjoin(Feedback, (Feedback.ticket_id == TicketItem.ticket_id)
                   & (Feedback.problem_id == TicketItem.problem_id))
        .where(Ticket.run_id == run.id, TicketItem.problem_id == problem_id)
        .order_by(Ticket.step.desc()).limit(limit)).all()
    visits = [ProblemVisit(step=r.step, ticket_id=r.id, model_version=r.model_version,
                           source=r.source, logit=r.logit, propensity=r.propensity,
                           utility=r.utility, utility_kind=r.utility_kind,
                           mean_reward=r.mean_reward, rewards=r.rewards)
              for r in rows]
    return ProblemVisits(problem_id=problem_id, external_id=problem.external_id,
                         prompt=problem.prompt, answer=problem.answer,
                         metadata=problem.meta or {}, visits=visits)
