"""Load benchmark: N concurrent simulated trainers against a multi-process deployment.

The script starts everything itself, on loopback only: a temporary PostgreSQL database
(created, migrated, dropped), a private redis-server on a free port (or --redis-url),
2 uvicorn API processes and 2 `curator worker` processes. Each simulated trainer owns a
run and loops select → simulated rollouts → feedback, alternating between the APIs, for
a bounded time (and at most --max-steps steps). Afterwards it waits for the workers to
drain and checks in the database that every reported ticket was applied exactly once.

    python bench/load.py [--trainers 50] [--duration 30] [--batch 32] [--pool 128]

Prints a Markdown table; exits 1 when any request failed or the exactly-once check fails.
The load generator itself does not import torch (only httpx, numpy and psycopg).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, free_port  # noqa: E402

ADMIN = "load-admin-" + uuid.uuid4().hex[:12]
MAX_TRAINERS = 500
MAX_DURATION_S = 300


# ----------------------------------------------------------------------------- processes

class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 - open for the process's lifetime
        self.p = subprocess.Popen(args, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                  cwd=ROOT)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._fh.close()


def wait_until(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited: {p.log.read_text()[-2000:]}")
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def service_env(db_url: str, redis_url: str, data_dir: Path, stream: str) -> dict[str, str]:
    env = {**os.environ,
           "CURATOR_DATABASE_URL": db_url, "CURATOR_REDIS_URL": redis_url,
           "CURATOR_FEEDBACK_STREAM": stream, "CURATOR_WORKER_GROUP": "load-workers",
           "CURATOR_ADMIN_TOKEN": ADMIN, "CURATOR_DATA_DIR": str(data_dir),
           "CURATOR_EMBEDDED_WORKER": "false", "CURATOR_DEVICE": "cpu",
           "CURATOR_LOG_LEVEL": "warning", "CURATOR_MODE": "production"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "service"), str(ROOT / "client"),
                                         env.get("PYTHONPATH", "")])
    return env


# ------------------------------------------------------------------------------- trainers

class Stats:
    def __init__(self) -> None:
        self.select_s: list[float] = []
        self.feedback_s: list[float] = []
        self.errors: list[str] = []
        self.reported: set[str] = set()  # tickets answered 202 without the replay header
        self.replayed = 0

    def error(self, what: str) -> None:
        self.errors.append(what)


async def trainer(i: int, urls: list[str], run_id: int, token: str, args, deadline: float,
                  stats: Stats, clients: dict[str, httpx.AsyncClient]) -> int:
    """select → simulated rollouts → feedback, until the deadline or --max-steps."""
    rng = np.random.default_rng(1000 + i)
    headers = {"Authorization": f"Bearer {token}"}
    steps = 0
    while time.monotonic() < deadline and steps < args.max_steps:
        client = clients[urls[steps % len(urls)]]  # alternate between the API replicas
        t0 = time.perf_counter()
        try:
            r = await client.post(f"/v1/runs/{run_id}/select", headers=headers,
                                  json={"batch_size": args.batch, "pool_size": args.pool})
        except httpx.HTTPError as exc:
            stats.error(f"select: {type(exc).__name__}: {exc}")
            continue
        stats.select_s.append(time.perf_counter() - t0)
        if r.status_code != 200:
            stats.error(f"select: {r.status_code} {r.text[:200]}")
            continue
        ticket = r.json()
        await asyncio.sleep(float(rng.uniform(0.5, 1.5)) * args.rollout_ms / 1000)
        results = []
        for p in ticket["problems"]:
            skill = (p["metadata"] or {}).get("skill", 0)
            rewards = (rng.random(args.group) < 0.2 + 0.15 * skill).astype(float)
            results.append({"problem_id": p["problem_id"], "rewards": rewards.tolist(),
                            "log_ratios": rng.normal(0, 0.01, args.group).round(5).tolist()})
        body = {"ticket_id": ticket["ticket_id"], "results": results}
        client = clients[urls[(steps + 1) % len(urls)]]  # feedback through the other one
        t0 = time.perf_counter()
        for attempt in range(3):  # a trainer retries transport errors: idempotent by ticket
            try:
                r = await client.post(f"/v1/runs/{run_id}/feedback", headers=headers,
                                      json=body)
                break
            except httpx.HTTPError as exc:
                stats.error(f"feedback (attempt {attempt + 1}): {type(exc).__name__}: {exc}")
        else:
            continue
        stats.feedback_s.append(time.perf_counter() - t0)
        if r.status_code != 202:
            stats.error(f"feedback: {r.status_code} {r.text[:200]}")
        elif r.headers.get("Curator-Replayed") == "true":
            stats.replayed += 1
        else:
            stats.reported.add(ticket["ticket_id"])
        steps += 1
    return steps


async def drive(urls: list[str], runs: list[tuple[int, str]], args) -> tuple[Stats, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=args.trainers + 10,
                          max_keepalive_connections=args.trainers + 10)
    async with AsyncExitStack() as stack:
        clients = {u: await stack.enter_async_context(
            httpx.AsyncClient(base_url=u, timeout=60, limits=limits)) for u in urls}
        t0 = time.monotonic()
        deadline = t0 + args.duration
        await asyncio.gather(*(trainer(i, urls, run_id, token, args, deadline, stats,
                                       clients)
                               for i, (run_id, token) in enumerate(runs)))
        wall = time.monotonic() - t0
    return stats, wall


# ------------------------------------------------------------------------ database checks

def db_check(dsn: str, run_ids: list[int], reported: set[str]) -> dict:
    import psycopg

    with psycopg.connect(dsn) as conn:
        q = conn.execute
        states = dict(q("SELECT state, count(*) FROM tickets WHERE run_id = ANY(%s) "
                        "GROUP BY state", (run_ids,)).fetchall())
        db_reported = {r[0] for r in q("SELECT id FROM tickets WHERE run_id = ANY(%s) AND "
                                       "state <> 'issued'", (run_ids,)).fetchall()}
        hist_rows = q("SELECT count(*) FROM history WHERE run_id = ANY(%s)",
                      (run_ids,)).fetchone()[0]
        dup_hist = q("SELECT count(*) FROM (SELECT ticket_id FROM history GROUP BY ticket_id "
                     "HAVING count(*) > 1) d").fetchone()[0]
        missing_hist = q("SELECT count(*) FROM tickets t LEFT JOIN history h ON "
                         "h.ticket_id = t.id WHERE t.run_id = ANY(%s) AND t.state = 'applied' "
                         "AND h.id IS NULL", (run_ids,)).fetchone()[0]
        bad_versions = q("""
            SELECT count(*) FROM runs r WHERE r.id = ANY(%s) AND r.model_version <>
              (SELECT count(*) FROM tickets t WHERE t.run_id = r.id AND t.state = 'applied')
        """, (run_ids,)).fetchone()[0]
        bad_sequences = q("""
            SELECT count(*) FROM (SELECT run_id, count(*) n, min(model_version) lo,
                                         max(model_version) hi, count(DISTINCT model_version) d
                                  FROM history WHERE run_id = ANY(%s) GROUP BY run_id) s
            WHERE lo <> 1 OR hi <> n OR d <> n
        """, (run_ids,)).fetchone()[0]
        bad_feedback = q("""
            SELECT count(*) FROM tickets t WHERE t.run_id = ANY(%s) AND t.state <> 'issued'
              AND t.accepted <> (SELECT count(*) FROM feedback f WHERE f.ticket_id = t.id)
        """, (run_ids,)).fetchone()[0]
    applied = states.get("applied", 0)
    ok = (states.get("reported", 0) == 0 and db_reported == reported
          and applied == len(reported) == hist_rows and dup_hist == missing_hist == 0
          and bad_versions == bad_sequences == bad_feedback == 0)
    return {"states": states, "applied": applied, "history_rows": hist_rows,
            "duplicate_history": dup_hist, "applied_without_history": missing_hist,
            "runs_with_wrong_version": bad_versions, "runs_with_broken_sequence": bad_sequences,
            "tickets_with_wrong_feedback_count": bad_feedback,
            "db_matches_client": db_reported == reported, "exactly_once": ok}


def pending(dsn: str, run_ids: list[int]) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM tickets WHERE run_id = ANY(%s) AND "
                            "state = 'reported'", (run_ids,)).fetchone()[0]


# ------------------------------------------------------------------------------------ main

def pct(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max")}
    a = np.asarray(samples) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def setup_bank_and_runs(url: str, args) -> list[tuple[int, str]]:
    rng = np.random.default_rng(0)
    h = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, headers=h, timeout=120) as c:
        bank = c.post("/v1/banks", json={"name": "load", "embedder": "provided",
                                         "dim": args.dim}).json()
        skills = rng.integers(0, 5, args.problems)
        centres = rng.standard_normal((5, args.dim))
        vecs = centres[skills] + 0.5 * rng.standard_normal((args.problems, args.dim))
        for start in range(0, args.problems, 2000):
            chunk = range(start, min(start + 2000, args.problems))
            r = c.post(f"/v1/banks/{bank['bank_id']}/problems", json={"problems": [
                {"external_id": f"l{i}", "prompt": f"load problem {i}",
                 "metadata": {"skill": int(skills[i])},
                 "embedding": vecs[i].round(5).tolist()} for i in chunk]})
            r.raise_for_status()
        params = {"dormant_steps": 2} if args.strategy == "actor_curator" else {}
        runs = []
        for i in range(args.trainers):
            r = c.post("/v1/runs", json={"bank_id": bank["bank_id"], "strategy": args.strategy,
                                         "params": params, "seed": i, "name": f"trainer-{i}"})
            r.raise_for_status()
            runs.append((r.json()["run_id"], r.json()["token"]))
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainers", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--max-steps", type=int, default=1000, help="per trainer")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pool", type=int, default=128)
    ap.add_argument("--group", type=int, default=4, help="rollouts per problem (G)")
    ap.add_argument("--rollout-ms", type=float, default=50.0,
                    help="simulated rollout + actor update time per step")
    ap.add_argument("--problems", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--strategy", default="actor_curator")
    ap.add_argument("--apis", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres",
                    help="libpq DSN of a PostgreSQL role allowed to create databases")
    ap.add_argument("--redis-url", default=None,
                    help="default: a private redis-server on a free loopback port")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.trainers <= MAX_TRAINERS or not 0 < args.duration <= MAX_DURATION_S:
        ap.error(f"--trainers in 1..{MAX_TRAINERS}, --duration in (0, {MAX_DURATION_S}]")

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    base = conninfo_to_dict(args.pg)
    if base.get("host", "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        ap.error("loopback only: --pg must point at 127.0.0.1")
    dbname = f"curator_load_{uuid.uuid4().hex[:10]}"
    admin_dsn = make_conninfo(args.pg, dbname=base.get("dbname", "postgres"))
    dsn = make_conninfo(args.pg, dbname=dbname)
    db_url = (f"postgresql+psycopg://{base.get('user', 'postgres')}@"
              f"{base.get('host', '127.0.0.1')}:{base.get('port', '5432')}/{dbname}")
    logs = Path(tempfile.mkdtemp(prefix="curator-load-"))
    procs: list[Proc] = []
    created_db = False
    failed = True
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        created_db = True
        redis_url = args.redis_url
        if redis_url is None:
            if shutil.which("redis-server") is None:
                ap.error("no redis-server binary: pass --redis-url")
            port = free_port()
            procs.append(Proc("redis", ["redis-server", "--port", str(port), "--bind",
                                        "127.0.0.1", "--save", "", "--appendonly", "no"],
                              dict(os.environ), logs))
            redis_url = f"redis://127.0.0.1:{port}/0"
            wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                              capture_output=True).stdout.strip() == b"PONG"
                       if shutil.which("redis-cli") else healthy_redis(port),
                       20, "redis", procs)
        env = service_env(db_url, redis_url, logs / "data",
                          f"curator:load:{uuid.uuid4().hex[:8]}")
        subprocess.run([sys.executable, "-m", "curator.cli", "migrate"], env=env, check=True,
                       cwd=ROOT, capture_output=True)

        t_start = time.monotonic()
        urls = []
        for i in range(args.apis):
            port = free_port()
            procs.append(Proc(f"api-{i}", [sys.executable, "-m", "uvicorn",
                                           "curator.app:create_app", "--factory", "--host",
                                           "127.0.0.1", "--port", str(port), "--log-level",
                                           "warning", "--no-access-log"], env, logs))
            urls.append(f"http://127.0.0.1:{port}")
        workers = [Proc(f"worker-{i}", [sys.executable, "-m", "curator.cli", "worker"], env,
                        logs) for i in range(args.workers)]
        procs += workers
        wait_until(lambda: all(healthy(u) for u in urls)
                   and all(b"consuming" in w.log.read_bytes() for w in workers),
                   180, "APIs and workers", procs)
        print(f"deployment up in {time.monotonic() - t_start:.1f} s "
              f"({args.apis} APIs, {args.workers} workers; logs in {logs})", file=sys.stderr)

        runs = setup_bank_and_runs(urls[0], args)
        print(f"load: {args.trainers} trainers for {args.duration:.0f} s …", file=sys.stderr)
        stats, wall = asyncio.run(drive(urls, runs, args))
        run_ids = [r for r, _ in runs]
        backlog = pending(dsn, run_ids)
        t0 = time.monotonic()
        while pending(dsn, run_ids) and time.monotonic() - t0 < args.drain_timeout:
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} died: {p.log.read_text()[-2000:]}")
            time.sleep(0.5)
        drain = time.monotonic() - t0
        check = db_check(dsn, run_ids, stats.reported)
        crashed = [p.name for p in procs if not p.alive()]
        report(args, stats, wall, backlog, drain, check, crashed)
        failed = bool(stats.errors) or not check["exactly_once"] or bool(crashed)
        if stats.errors:
            print("\nfirst errors:\n" + "\n".join(stats.errors[:10]), file=sys.stderr)
    finally:
        for p in reversed(procs):
            p.stop()
        if created_db:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if args.keep_logs or failed:
            print(f"logs kept in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


def healthy_redis(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def report(args, stats: Stats, wall: float, backlog: int, drain: float, check: dict,
           crashed: list[str]) -> None:
    sel, fb = pct(stats.select_s), pct(stats.feedback_s)
    steps = len(stats.feedback_s)
    print(f"\n### Load: {args.trainers} trainers × {args.duration:.0f} s, {args.apis} APIs + "
          f"{args.workers} workers, PostgreSQL + Redis, {os.cpu_count()} CPU cores\n")
    print(f"strategy `{args.strategy}`, batch {args.batch} of pool {args.pool}, "
          f"G={args.group}, simulated rollout {args.rollout_ms:.0f} ms/step, "
          f"{args.problems} problems (dim {args.dim})\n")
    print("| metric | value |\n|---|---|")
    rows = [
        ("errors (non-2xx or transport)", f"**{len(stats.errors)}**"),
        ("steps (select + feedback)", f"{steps} ({steps / wall:.1f}/s over {wall:.1f} s)"),
        ("select latency p50 / p90 / p99 / max",
         f"{sel['p50']:.1f} / {sel['p90']:.1f} / {sel['p99']:.1f} / {sel['max']:.1f} ms"),
        ("feedback latency p50 / p90 / p99 / max",
         f"{fb['p50']:.1f} / {fb['p90']:.1f} / {fb['p99']:.1f} / {fb['max']:.1f} ms"),
        ("feedback replays (retries answered with the first receipt)", str(stats.replayed)),
        ("tickets reported (202, first receipt)", str(len(stats.reported))),
        ("worker backlog at end of load → drained in", f"{backlog} → {drain:.1f} s"),
        ("tickets applied / history rows", f"{check['applied']} / {check['history_rows']}"),
        ("tickets with >1 history row / applied without one",
         f"{check['duplicate_history']} / {check['applied_without_history']}"),
        ("runs whose model_version ≠ applied tickets / broken version sequence",
         f"{check['runs_with_wrong_version']} / {check['runs_with_broken_sequence']}"),
        ("tickets whose feedback rows ≠ accepted", str(check["tickets_with_wrong_feedback_count"])),
        ("every ticket applied exactly once", "**yes**" if check["exactly_once"] else "**NO**"),
        ("processes that died", ", ".join(crashed) or "none"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    sys.exit(main())
