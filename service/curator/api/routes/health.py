"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from curator.api.deps import StateDep
from curator.db.models import Run, Ticket
from curator.metrics import CONTENT_TYPE
from curator.tickets import TicketState

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
async def readyz(state: StateDep) -> JSONResponse:
    def db_ok() -> bool:
        try:
            with state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    checks = {
        "db": await run_in_threadpool(db_ok),
        "queue": await state.queue.ping(),
        "worker": state.worker_task is None or not state.worker_task.done(),
        "model": bool(state.device),
    }
    # The queue is not required to serve: feedback is committed to the database before
    # the 202 and a worker's sweep re-queues it once Redis is back. A Redis outage makes
    # the replica "degraded" (200), not unready, so a load balancer keeps it in rotation.
    ok = checks["db"] and checks["worker"] and checks["model"]
    status = ("ok" if checks["queue"] else "degraded") if ok else "unavailable"
    body = {"status": status, "checks": checks}
    if not ok:
        body["error"] = {"type": "unavailable", "message": "not ready", "details": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> PlainTextResponse:
    """Prometheus text format: this process's request metrics, the shared backlog."""

    def db_gauges() -> dict:
        with state.session_factory() as s:
            states = dict(s.execute(select(Ticket.state, func.count())
                                    .group_by(Ticket.state)).all())
            runs = s.scalar(select(func.count()).select_from(Run)) or 0
        return {"tickets": {f"state={k}": float(states.get(k, 0))
                            for k in (TicketState.ISSUED, TicketState.REPORTED,
                                                     TicketState.APPLIED)},
                "runs": float(runs)}

    gauges = await run_in_threadpool(db_gauges)
    # how this process's selects got their pool's logits: scored ahead (after the update
    # that made the version, runs/prescore.py) or inline on the request path
    gauges["select_pools"] = {"scored=ahead": float(state.snapshots.prescored_hits),
                              "scored=inline": float(state.snapshots.prescored_misses)}
    # of the selects on a prescored pool, those whose draw was made ahead too
    gauges["select_draws_ahead"] = float(state.snapshots.drawn_ahead)
    try:
        gauges["queue_depth"] = float(await state.queue.depth())
    except Exception:
        gauges["queue_depth"] = float("nan")
    return Response(state.metrics.render(gauges), media_type=CONTENT_TYPE)
