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
    ok = all(checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    if not ok:
        body["error"] = {"type": "unavailable", "message": "not ready", "details": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
