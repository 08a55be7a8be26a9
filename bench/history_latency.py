"""Admin history latency on a long run: "selected share by field" from the per-ticket
aggregate (history.selected_by, migration 0003) against the join over the tickets' items
it replaces (what points recorded before 0003 still use); and the distribution endpoint
on that run next to a fresh run of the same bank (what in it grows with run length).

Builds a SQLite database (migrated to head, rows inserted directly: a bank with metadata
fields difficulty/source/subject, one run of --steps applied tickets of --batch items, a
history point per ticket whose aggregate comes from the worker's own function), then
times, in process, the view function and the HTTP endpoint (FastAPI app, ASGI; includes
validation and JSON encoding):

    python bench/history_latency.py [--steps 10000] [--batch 256] [--bank 100000]
                                    [--repeat 5] [--db PATH] [--limits 1000,5000]
                                    [--url postgresql+psycopg://postgres@127.0.0.1/DB]

"after" reads the aggregates; "before" is the same database with selected_by set to NULL,
which the view answers with the pre-0003 join (the same query as before the change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from sqlalchemy import insert, select, text, update  # noqa: E402

from curator.admin import views  # noqa: E402
from curator.cli import migrate  # noqa: E402
from curator.core.config import Settings  # noqa: E402
from curator.curation.checkpoint import dumps  # noqa: E402
from curator.db.models import (  # noqa: E402
    Bank,
    Checkpoint,
    HistoryPoint,
    Problem,
    Run,
    Ticket,
)
from curator.db.session import make_engine, make_session_factory  # noqa: E402
from curator.runs.selected_by import count_selected, selected_counts  # noqa: E402
from curator.runs.strategy_store import fresh_strategy  # noqa: E402

ADMIN = "bench-admin"
DIM = 8
SOURCES = [f"source-{i}" for i in range(8)]
SUBJECTS = [f"subject-{i}" for i in range(20)]


def problem_meta(i: int) -> dict:
    return {"difficulty": i % 5 + 1, "source": SOURCES[i % 8], "subject": SUBJECTS[i % 20]}


def build(url: str, steps: int, batch: int, n_bank: int, seed: int = 0) -> None:
    engine = make_engine(url)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(Bank), [{"id": 1, "name": "bench", "embedder": "provided",
                                     "dim": DIM, "size": n_bank}])
        vecs = rng.standard_normal((n_bank, DIM)).astype("<f4")
        for start in range(0, n_bank, 50_000):
            conn.execute(insert(Problem), [
                {"bank_id": 1, "position": i, "external_id": f"p{i}", "prompt": f"problem {i}",
                 "answer": str(i), "metadata": problem_meta(i), "embedding": vecs[i].tobytes()}
                for i in range(start, min(n_bank, start + 50_000))])
        for run_id, run_steps in ((1, steps), (2, 0)):
            row = {"id": run_id, "bank_id": 1, "name": f"run{run_id}", "strategy": "uniform",
                   "params": {}, "seed": run_id, "token_hash": "x",
                   "cursor": run_steps * batch, "step": run_steps,
                   "model_version": run_steps, "stats": {}}
            conn.execute(insert(Run), [row])
            if run_steps:  # the checkpoint the distribution loads (the strategy's own state)
                state = fresh_strategy(Run(**row), DIM, "cpu").state_dict()
                conn.execute(insert(Checkpoint), [{"run_id": run_id, "version": run_steps,
                                                   "blob": dumps(state)}])
    raw = engine.raw_connection()  # the 2.5M ticket items: plain executemany
    try:
        cur = raw.cursor()
        mark = "?" if url.startswith("sqlite") else "%s"  # the driver's paramstyle
        chunk = 200
        for start in range(1, steps + 1, chunk):
            tickets, items, points = [], [], []
            for step in range(start, min(steps, start + chunk - 1) + 1):
                tid = f"t{step:08d}"
                chosen = rng.choice(n_bank, size=batch, replace=False)
                tickets.append({"id": tid, "run_id": 1, "step": step, "model_version": step - 1,
                                "pool_size": 4 * batch, "pool_entropy": 1.0, "state": "applied",
                                "accepted": batch})
                items += [(tid, int(p), r, 0.0, 1.0 / batch, "explore")
                          for r, p in enumerate(chosen)]
                points.append({"run_id": 1, "ticket_id": tid, "step": step, "model_version": step,
                               "n_items": batch, "loss": 0.0, "mean_utility": 0.0,
                               "mean_reward": 0.5, "entropy": 1.0, "curator_share": 0.0,
                               "extra": {},
                               "selected_by": count_selected(problem_meta(int(p))
                                                             for p in chosen)})
            with engine.begin() as conn:
                conn.execute(insert(Ticket), tickets)
            cur.executemany("INSERT INTO ticket_items (ticket_id, problem_id, rank, logit, "
                            f"propensity, source) VALUES ({', '.join([mark] * 6)})", items)
            raw.commit()
            with engine.begin() as conn:
                conn.execute(insert(HistoryPoint), points)
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    print(f"built {steps} steps x {batch} items, bank {n_bank}: "
          f"{time.perf_counter() - t0:.0f} s", flush=True)


def backfill(url: str) -> None:
    """Aggregates for points left NULL (a reused database whose last run was interrupted
    while it measured the join), with the worker's own function."""
    engine = make_engine(url)
    sf = make_session_factory(engine)
    with sf() as s:
        rows = s.execute(select(HistoryPoint.id, HistoryPoint.ticket_id, Run.bank_id)
                         .join(Run, Run.id == HistoryPoint.run_id)
                         .where(HistoryPoint.selected_by.is_(None))).all()
        for hid, tid, bank_id in rows:
            s.execute(update(HistoryPoint).where(HistoryPoint.id == hid)
                      .values(selected_by=selected_counts(s, bank_id, tid)))
        s.commit()
    engine.dispose()
    if rows:
        print(f"backfilled {len(rows)} history points", flush=True)


def timed(call, repeat: int) -> float:
    t0 = time.perf_counter()
    call()  # warm (page cache, snapshot, store)
    if time.perf_counter() - t0 > 2.0:
        repeat = 1  # the slow (join) path: one more call is enough to read it
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--bank", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--limits", default="1000,5000")
    ap.add_argument("--db", type=Path, default=None, help="reuse or create this SQLite file")
    ap.add_argument("--url", default=None,
                    help="a PostgreSQL database instead (SQLAlchemy URL); built when empty")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="curator-history-"))
    db = args.db or work / "curator.db"
    url = args.url or f"sqlite:///{db}"
    settings = Settings(database_url=url, data_dir=work / "data", admin_token=ADMIN,
                        embedded_worker=False, device="cpu")
    migrate(settings)
    with make_session_factory(make_engine(url))() as s:
        fresh = s.get(Bank, 1) is None
    if fresh:
        build(url, args.steps, args.batch, args.bank)
    else:
        backfill(url)

    from fastapi.testclient import TestClient

    from curator.app import create_app

    engine = make_engine(url)
    sf = make_session_factory(engine)
    limits = [int(x) for x in args.limits.split(",")]
    results: dict[str, dict[str, float]] = {}
    with TestClient(create_app(settings)) as client, sf() as s:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        run = s.get(Run, 1)
        n_items = s.scalar(text("SELECT count(*) FROM ticket_items"))
        size = "" if args.url else f", {db.stat().st_size / 2**20:.0f} MiB"
        print(f"database: {args.url or db} ({run.step} steps, {n_items} ticket items{size})")

        def http(path: str):
            def call():
                r = client.get(path, headers=auth)
                assert r.status_code == 200, r.text
            return call

        def view(**kw):
            def call():
                with sf() as fresh_session:  # a session per request, as the endpoint has
                    views.history(session=fresh_session, run=run, **kw)
            return call

        def measure(label: str) -> None:
            row = {}
            for limit in limits:
                for by in (None, "difficulty", "absent"):
                    q = f"?limit={limit}" + (f"&by={by}" if by else "")
                    row[f"view {q}"] = timed(view(limit=limit, by=by), args.repeat)
                    row[f"http {q}"] = timed(http(f"/v1/runs/1/history{q}"), args.repeat)
            results[label] = row

        measure("after (aggregate)")
        saved = s.execute(select(HistoryPoint.id, HistoryPoint.selected_by)
                          .where(HistoryPoint.run_id == 1)).all()
        s.execute(update(HistoryPoint).where(HistoryPoint.run_id == 1).values(selected_by=None))
        s.commit()
        try:
            measure("before (join)")
        finally:
            s.execute(update(HistoryPoint),  # ORM bulk update by primary key (JSON-typed)
                      [{"id": i, "selected_by": v} for i, v in saved])
            s.commit()

        dist = {}
        for rid, name in ((1, f"run of {run.step} steps"), (2, "fresh run, same bank")):
            dist[f"distribution ({name}) by=difficulty"] = timed(
                http(f"/v1/runs/{rid}/distribution?by=difficulty"), args.repeat)
            dist[f"queue_states ({name})"] = timed(
                lambda rid=rid: views.queue_states(session=s, run_ids=[rid]), args.repeat)
        dist["GET /v1/runs (both runs)"] = timed(http("/v1/runs"), args.repeat)

        tid = s.scalar(text("SELECT id FROM tickets WHERE run_id = 1 ORDER BY step LIMIT 1"))
        worker = timed(lambda: selected_counts(s, 1, tid), max(args.repeat, 20))
    engine.dispose()

    print(f"\nhistory, median of {args.repeat} (ms)")
    labels = list(results)
    print(f"{'request':<44}" + "".join(f"{lab:>20}" for lab in labels))
    for key in results[labels[0]]:
        print(f"{key:<44}" + "".join(f"{results[lab][key]:>20.1f}" for lab in labels))
    print(f"\ndistribution and listing, median of {args.repeat} (ms)")
    for key, ms in dist.items():
        print(f"{key:<56}{ms:>10.1f}")
    print(f"\nworker: selected_counts for one ticket of {args.batch} items: {worker:.2f} ms")
    print(json.dumps({"history": results, "distribution": dist, "worker_ms": worker}))


if __name__ == "__main__":
    main()
