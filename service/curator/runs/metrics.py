"""Trainer-reported metrics per step (eval accuracy and the like), kept for the dashboard.

The same contract as feedback: a number reported again with the same value is a replay,
with another value a conflict (nothing is silently replaced), and a post is all or
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curator.core.errors import Clash
from curator.db.models import RunMetric, utcnow


@dataclass(frozen=True)
class MetricsReceipt:
    accepted: int  # new numbers kept by this post
    replayed: int  # numbers this run already held with the same value


def record_metrics(session: Session, run_id: int, step: int,
                   metrics: dict[str, float]) -> MetricsReceipt:
    try:
        return _record(session, run_id, step, metrics)
    except IntegrityError:  # a concurrent post of the same numbers won: judge against it
        session.rollback()
        return _record(session, run_id, step, metrics)


def _record(session: Session, run_id: int, step: int,
            metrics: dict[str, float]) -> MetricsReceipt:
    kept = dict(session.execute(select(RunMetric.name, RunMetric.value).where(
        RunMetric.run_id == run_id, RunMetric.step == step,
        RunMetric.name.in_(list(metrics)))).all())
    clashes = {n: {"kept": kept[n], "sent": v} for n, v in metrics.items()
               if n in kept and kept[n] != v}
    if clashes:
        session.rollback()
        raise Clash(f"step {step} already has other values for {', '.join(sorted(clashes))}",
                    {"step": step, "metrics": clashes})
    new = {n: v for n, v in metrics.items() if n not in kept}
    now = utcnow()
    session.add_all(RunMetric(run_id=run_id, name=n, step=step, value=float(v), created_at=now)
                    for n, v in new.items())
    session.commit()
    return MetricsReceipt(accepted=len(new), replayed=len(metrics) - len(new))


def metric_series(session: Session, run_id: int, *, limit: int = 10_000,
                  ) -> dict[str, list[tuple[int, float]]]:
    """name → [(step, value)] in step order, the newest `limit` points per run."""
    rows = session.execute(select(RunMetric.name, RunMetric.step, RunMetric.value)
                           .where(RunMetric.run_id == run_id)
                           .order_by(RunMetric.step.desc()).limit(limit)).all()
    out: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in reversed(rows):
        out.setdefault(name, []).append((step, value))
    return out
