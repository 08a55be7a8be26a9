"""Crash safety against real processes on PostgreSQL + Redis (docs/design.md §3).

Each test works on its own run of the shared `deployment` (API + worker processes over a
private redis-server) and checks, in the database, that every reported ticket ends
applied exactly once (`assert_applied_exactly_once`).
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from sqlalchemy import func, select, text

from curator.db.models import Checkpoint, HistoryPoint, Run
from tests.reliability.support import (
    assert_applied_exactly_once,
    ticket_states,
    wait_all_applied,
)
from tests.topology.procs import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# The session holding `SELECT … FROM runs FOR UPDATE` (the updater's row lock) and its
# transaction id: only the worker takes that lock, and only while applying a ticket.
APPLY_LOCK = text("""
    SELECT a.pid, a.backend_xid::text AS xid
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowShareLock'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.relation = 'runs'::regclass AND l.pid <> pg_backend_pid()
      AND a.backend_xid IS NOT NULL
""")
BACKEND_GONE = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
XACT_STATUS = text("SELECT txid_status((txid_snapshot_xmax(txid_current_snapshot()) >> 32 << 32)"
                   " + CAST(:xid AS bigint))")


def scalar(engine, query, **params):
    with engine.connect() as c:
        return c.execute(query, params).scalar()


def freeze_mid_apply(worker, engine, attempts: int = 50):
    """SIGSTOP the worker at a moment it holds the row lock of an open apply transaction.

    Stopped, it cannot commit: a lock still held 50 ms after the stop belongs to a
    transaction that is in the middle of applying a ticket. Returns (pid, xid) of it.
    """
    for _ in range(attempts):
        worker.p.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        with engine.connect() as c:
            holder = c.execute(APPLY_LOCK).first()
        if holder is not None:
            return holder
        worker.p.send_signal(signal.SIGCONT)  # between two applies: let it run on
        time.sleep(0.03)
    raise AssertionError("never caught the worker inside an apply")


def consistent_at_rest(engine, run_id: int) -> int:
    """Run version, history rows and newest checkpoint agree; returns that number."""
    with engine.connect() as c:
        version = c.scalar(select(Run.model_version).where(Run.id == run_id))
        hist = c.scalar(select(func.count()).select_from(HistoryPoint)
                        .where(HistoryPoint.run_id == run_id))
        top = c.scalar(select(func.max(Checkpoint.version)).where(Checkpoint.run_id == run_id))
    assert version == hist == (top or 0), (version, hist, top)
    return version


def test_worker_sigkill_mid_apply_then_restart(deployment):
    """SIGKILL a worker while it holds the run's row lock inside an apply: the apply's
    transaction is rolled back (PostgreSQL reports it aborted), and the restarted worker
    applies every reported ticket exactly once, continuing the version sequence."""
    dep, engine = deployment, deployment.engine
    drv = dep.driver()
    # epochs without the trust region's early stop make one apply slow enough to be
    # caught holding the lock
    run_id, token = drv.run(drv.bank(n=400), params={"dormant_steps": 0, "epochs": 25,
                                                     "minibatch": 8, "max_kl": 0})
    n = 10
    tickets = [drv.select(run_id, token, batch_size=32, pool_size=32) for _ in range(n)]
    dep.worker.p.send_signal(signal.SIGSTOP)  # all reported before the first apply starts
    for t in tickets:
        assert drv.report(run_id, token, t).status_code == 202
    dep.worker.p.send_signal(signal.SIGCONT)

    wait_for(lambda: 2 <= ticket_states(engine, run_id).get("applied", 0) <= n - 4, 90,
             "some tickets applied")
    holder = freeze_mid_apply(dep.worker, engine)
    dep.worker.kill()  # SIGKILL, while the apply's transaction is open
    wait_for(lambda: scalar(engine, BACKEND_GONE, pid=holder.pid), 20,
             "the killed worker's database session to end")
    assert scalar(engine, XACT_STATUS, xid=holder.xid) == "aborted"
    states = ticket_states(engine, run_id)
    applied = consistent_at_rest(engine, run_id)
    assert states == {"applied": applied, "reported": n - applied}, states

    dep.start_worker()  # re-queues every reported ticket from the database at start
    wait_all_applied(engine, run_id, n, timeout=120)
    assert_applied_exactly_once(engine, run_id, n)
    # the API serves the version the restarted worker reached (announced or read from DB)
    wait_for(lambda: drv.select(run_id, token, 4, 8)["model_version"] == n, 30,
             "the API to serve the newest version")
    drv.close()


def test_redis_restart_while_tickets_are_queued(deployment):
    """Worker down, tickets queued in the stream, Redis SIGKILLed and restarted empty: the
    restarted worker re-queues them from the database; the API reconnects by itself."""
    dep, engine = deployment, deployment.engine
    stream = dep.env["CURATOR_FEEDBACK_STREAM"]
    drv = dep.driver()
    run_id, token = drv.run(drv.bank(n=300), params={"dormant_steps": 0, "hidden": 32})
    assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    wait_all_applied(engine, run_id, 1)

    dep.worker.kill()
    r = dep.redis.client()
    queued = r.xlen(stream)  # a worker SIGKILLed earlier may have left pending entries
    for _ in range(5):
        assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    assert r.xlen(stream) == queued + 5
    r.close()
    dep.redis.kill()
    dep.redis.start()
    r = dep.redis.client()
    assert r.exists(stream) == 0  # the queue is gone; the database still has the record
    # the API reconnects by itself: feedback right after the restart is queued at once
    # (not left to the worker's sweep, which only re-queues tickets older than 10 s)
    assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    assert r.xlen(stream) == 1, "the first put after the Redis restart was not queued"
    r.close()
    assert ticket_states(engine, run_id) == {"applied": 1, "reported": 6}

    dep.start_worker()
    wait_all_applied(engine, run_id, 7)
    assert_applied_exactly_once(engine, run_id, 7)
    drv.close()


def test_redis_down_while_feedback_arrives(deployment):
    """Redis down (worker running): feedback is still answered 202 (committed in the
    database), /readyz says the queue is down, and once Redis is back the worker's sweep
    re-queues the tickets the queue never saw."""
    dep, engine = deployment, deployment.engine
    drv = dep.driver()
    run_id, token = drv.run(drv.bank(n=300), params={"dormant_steps": 0, "hidden": 32})
    assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    wait_all_applied(engine, run_id, 1)

    dep.redis.kill()
    for _ in range(3):
        t0 = time.monotonic()
        resp = drv.report(run_id, token, drv.select(run_id, token))
        assert resp.status_code == 202, resp.text
        assert resp.json()["state"] == "reported" and "Curator-Replayed" not in resp.headers
        assert time.monotonic() - t0 < 10
    ready = httpx.get(dep.url + "/readyz", timeout=10)
    # still serving (feedback is committed first), but says the queue is down
    assert ready.status_code == 200 and ready.json()["checks"]["queue"] is False
    assert ready.json()["status"] == "degraded"
    assert ticket_states(engine, run_id) == {"applied": 1, "reported": 3}

    dep.redis.start()
    wait_all_applied(engine, run_id, 4, timeout=60)
    assert_applied_exactly_once(engine, run_id, 4)
    wait_for(lambda: httpx.get(dep.url + "/readyz", timeout=10).json()["status"] == "ok", 10,
             "readiness once Redis is back")
    drv.close()


def test_api_killed_between_select_and_feedback(deployment):
    """A ticket selected through an API process that is then SIGKILLed stays usable:
    feedback through a new process is accepted and applied; a replay of a ticket reported
    through the dead process gets its first receipt."""
    dep, engine = deployment, deployment.engine
    a = dep.driver()
    run_id, token = a.run(a.bank(n=200), params={"dormant_steps": 0, "hidden": 32})
    t1, t2 = a.select(run_id, token), a.select(run_id, token)
    first = a.report(run_id, token, t1)
    assert first.status_code == 202
    a.close()
    dep.api.kill()  # SIGKILL: t2 was selected through it and never reported

    dep.start_api()
    b = dep.driver()
    r = b.report(run_id, token, t2)
    assert r.status_code == 202, r.text
    assert r.json() == {"ticket_id": t2["ticket_id"], "accepted": 16, "state": "reported",
                        "replayed": False, "reported": 16, "expected": 16}
    assert "Curator-Replayed" not in r.headers
    again = b.report(run_id, token, t1)
    assert again.status_code == 202 and again.headers["Curator-Replayed"] == "true"
    assert again.json()["ticket_id"] == t1["ticket_id"]
    assert again.json()["reported"] == first.json()["accepted"] == 16
    wait_all_applied(engine, run_id, 2)
    assert_applied_exactly_once(engine, run_id, 2)
    assert b.select(run_id, token)["step"] == 3  # the step counter lives in the database
    b.close()


def _gauge(url: str, name: str) -> float:
    text_ = httpx.get(url + "/metrics", timeout=10).text
    line = next(x for x in text_.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def test_a_separate_workers_liveness_and_lag_are_visible_to_the_api(deployment):
    """The API runs without a worker of its own: /readyz and /metrics see the worker
    process through its heartbeat, see it die (SIGKILL) and the apply lag grow while
    feedback waits, and see it back once restarted."""
    dep, engine = deployment, deployment.engine
    drv = dep.driver()
    run_id, token = drv.run(drv.bank(n=300), params={"dormant_steps": 0, "hidden": 32})
    assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    wait_all_applied(engine, run_id, 1)
    ready = httpx.get(dep.url + "/readyz", timeout=10).json()
    assert ready["status"] == "ok" and ready["checks"]["worker"] is True, ready
    assert ready["workers"]["alive"] == 1 and ready["workers"]["waiting"] == 0, ready
    assert _gauge(dep.url, "curator_workers_alive") == 1.0

    dep.worker.kill()
    for _ in range(3):
        assert drv.report(run_id, token, drv.select(run_id, token)).status_code == 202
    wait_for(lambda: not httpx.get(dep.url + "/readyz", timeout=10).json()["checks"]["worker"],
             15, "readyz to see the worker gone")
    ready = httpx.get(dep.url + "/readyz", timeout=10)
    # still serving (selects work, feedback is kept): degraded, not out of rotation
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
    assert ready.json()["workers"]["waiting"] == 3 and ready.json()["workers"]["lag_s"] > 0
    # the worker may be seen gone under a second after the first report (its last beat
    # was up to 2 s before the kill, stale after 3 s): the lag must then keep growing
    wait_for(lambda: httpx.get(dep.url + "/readyz", timeout=10).json()["workers"]["lag_s"] > 1,
             10, "the apply lag to grow while no worker applies")
    assert _gauge(dep.url, "curator_workers_alive") == 0.0
    assert _gauge(dep.url, "curator_apply_lag_seconds") > 1

    dep.start_worker()
    wait_all_applied(engine, run_id, 4, timeout=60)
    wait_for(lambda: httpx.get(dep.url + "/readyz", timeout=10).json()["status"] == "ok", 15,
             "readiness once the worker is back")
    assert _gauge(dep.url, "curator_apply_lag_seconds") == 0.0
    drv.close()
