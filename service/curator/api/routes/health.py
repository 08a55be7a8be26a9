"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from curator.api.deps import StateDep

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
