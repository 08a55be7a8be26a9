"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select

from curator.api.deps import StateDep
from curator.api.schemas import Readiness
from curator.core.metrics import CONTENT_TYPE
from curator.core.tickets import TicketState
from curator.db.models import Run, Ticket
from curator.worker.beats import worker_status

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process answers (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database, queue, workers, apply lag",
            response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a dependency is not ready"}})
async def readyz(state: StateDep) -> JSONResponse:
    """Ready to serve? `checks`: the database, the queue, a live worker (this process's
    own, or any worker process's heartbeat within `worker_stale_s`, 15 s), the model
    device; `workers`: how many are alive and the apply lag (age of the oldest reported,
    unapplied ticket)."""

    def db_read() -> dict | None:
        try:
            with state.session_factory() as s:  # its three reads are the database check
                w = worker_status(s, state.settings.worker_stale_s)
            return {"alive": w.alive, "last_beat_age_s": w.last_beat_age_s,
                    "lag_s": round(w.lag_s, 3), "waiting": w.waiting}
        except Exception:
            return None

    workers = await run_in_threadpool(db_read)
    embedded_dead = state.worker_task is not None and state.worker_task.done()
    checks = {
        "db": workers is not None,
        "queue": await state.queue.ping(),
        "worker": not embedded_dead and (
            state.worker_task is not None or bool(workers and workers["alive"])),
        "model": bool(state.device),
    }
    # The queue is not required to serve: feedback is committed to the database before
    # the 202 and a worker's sweep re-queues it once Redis is back. A Redis outage makes
    # the replica "degraded" (200), not unready, so a load balancer keeps it in rotation.
    # So does a separate worker that stopped beating: this replica still serves selects
    # and keeps feedback; taking every replica out of rotation would stop the trainers.
    # Its own embedded worker having died is a fault of this process: 503.
    ok = checks["db"] and not embedded_dead and checks["model"]
    status = ("ok" if checks["queue"] and checks["worker"] else "degraded") if ok \
        else "unavailable"
    body = {"status": status, "checks": checks, "workers": workers}
    if not ok:
        body["error"] = {"type": "unavailable", "message": "not ready", "details": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(state: StateDep) -> PlainTextResponse:
    """Prometheus text format: this process's request metrics, the shared backlog, the
    workers alive (heartbeats newer than `worker_stale_s`, 15 s) and the apply lag (age
    of the oldest reported, unapplied ticket)."""

    def db_gauges() -> dict:
        with state.session_factory() as s:
            states = dict(s.execute(select(Ticket.state, func.count())
                                    .group_by(Ticket.state)).all())
            runs = s.scalar(select(func.count()).select_from(Run)) or 0
            w = worker_status(s, state.settings.worker_stale_s)
        return {"tickets": {f"state={k}": float(states.get(k, 0))
                            for k in (TicketState.ISSUED, TicketState.REPORTED,
                                                     TicketState.APPLIED)},
                "runs": float(runs),
                "workers_alive": float(w.alive),
                "worker_last_beat_age_seconds": (float("nan") if w.last_beat_age_s is None
                                                 else w.last_beat_age_s),
                "apply_lag_seconds": w.lag_s}

    gauges = await run_in_threadpool(db_gauges)  # one thread hop, one session
    # how this process's selects got their pool's logits: scored ahead (after the update
    # that made the version, selection/prescore.py) or inline on the request path
    gauges["select_pools"] = {"scored=ahead": float(state.snapshots.prescored_hits),
                              "scored=inline": float(state.snapshots.prescored_misses)}
    # of the selects on a prescored pool, those whose draw was made ahead too
    gauges["select_draws_ahead"] = float(state.snapshots.drawn_ahead)
    try:
        gauges["queue_depth"] = float(await state.queue.depth())
    except Exception:
        gauges["queue_depth"] = float("nan")
    return Response(state.metrics.render(gauges), media_type=CONTENT_TYPE)
