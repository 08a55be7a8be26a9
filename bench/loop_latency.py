"""Select latency inside a training loop: every select follows an applied update.

For each strategy, bank size (384-d provided vectors) and topology, a fresh run is driven
through `--steps` steps of

    select (timed) → feedback (G rewards per problem; actor_curator also log_ratios)
    → poll GET /v1/runs/{run} until model_version advances → next select

so every select after the first is served right after the run's model changed (the API
must pick up the new checkpoint). The first `--warmup` steps are excluded (they also
cover actor_curator's 5 dormant steps). Per ticket the worker's apply is measured three
ways: the client's poll (feedback 202 → new version visible), the server's stamp (the
history point's `applied_at` minus the client's clock at the 202: same machine) and the
worker's own apply time (its `applied … in X ms` log line, captured by a logging handler
this script installs in the server / worker process; nothing in service/ is changed).

Topologies: `sqlite` (the embedded default: one uvicorn process, in-process queue and
worker) and `postgres` (a fresh PostgreSQL database, created and dropped by this script,
a private redis-server on a free port unless --redis-url, one API process and one
separate `curator worker` process). The baseline is a no-op FastAPI app
(bench/noop_app.py plus no-op feedback / run endpoints) driven with the same request
pattern, measured before every (size, topology) block and once at the end; each block's
figures are ratios to the mean no-op select p50 of the measurements around it.

Admin endpoints on a long run: a `uniform` run on the smallest bank is pushed through
`--history-seed-steps` real HTTP steps (batch 256, select → feedback, pipelined, then
drained by the worker) and, with `--history-build clone` (default), extended to
`--history-steps` by copying those tickets, their items and history points in the
database through the service's own table definitions (new ticket ids, steps and model
versions; feedback rows are not copied, no timed endpoint reads them). `--history-build
http` drives every step over HTTP instead (slow: ~10k steps × tens of ms). Then
GET …/history?limit=1000 (first and last page, with and without &by=level), the
dashboard's full paged load (limit=5000 pages, &by=level), GET …/distribution (plain and
the dashboard's ?top=15&by=level) and GET /v1/runs are timed.

    python bench/loop_latency.py --quick              # 10k, sqlite, 30 steps
    python bench/loop_latency.py [--sizes 10000,100000,1000000] [--topologies sqlite,postgres]
        [--strategies uniform,learnability,sec,pcl,actor_curator] [--steps 60]
        [--history-steps 10000] [--out bench/results/loop_latency.json]

Writes the JSON to --out and a Markdown report next to it (.md); prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, free_port, write_parquet  # noqa: E402
from load import Proc, healthy, healthy_redis, wait_until  # noqa: E402

ADMIN = "loop-admin-" + uuid.uuid4().hex[:12]
ALL_STRATEGIES = "uniform,learnability,sec,pcl,actor_curator"
APPLY_LOG_ENV = "LOOP_BENCH_APPLY_LOG"
APPLIED_RE = re.compile(r"applied (\w+) \S+ run \d+ v(\d+) in ([0-9.]+) ms")
LEVELS = ["Level 1", "Level 2", "Level 3", "Level 4", "Level 5"]


# ------------------------------------------------------------ app factories (server side)

def _install_apply_log() -> None:
    """Send the worker's per-ticket `applied … in X ms` debug line to a file."""
    path = os.environ.get(APPLY_LOG_ENV)
    if not path:
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(created).6f %(message)s"))
    handler.setLevel(logging.DEBUG)
    handler.addFilter(lambda rec: rec.getMessage().startswith("applied "))
    logger = logging.getLogger("curator.worker")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)


def curator_app():
    """uvicorn factory: the real service, plus the apply-time log handler."""
    _install_apply_log()
    from curator.app import create_app

    return create_app()


def noop_loop_app():
    """uvicorn factory: bench/noop_app.py plus no-op feedback (202) and run endpoints, so the
    baseline sees the same request pattern; each feedback bumps the version at once."""
    from noop_app import create_app

    app = create_app()
    state = {"version": 0}

    @app.post("/v1/runs/{run_id}/feedback", status_code=202)
    def feedback(run_id: int, body: dict) -> dict:
        state["version"] += 1
        return {"ticket_id": body.get("ticket_id"), "accepted": len(body.get("results", [])),
                "state": "reported"}

    @app.get("/v1/runs/{run_id}")
    def get_run(run_id: int) -> dict:
        v = state["version"]
        return {"run_id": run_id, "step": v, "model_version": v,
                "tickets": {"issued": v, "reported": v, "applied": v, "failed": 0}}

    return app


# ----------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(samples_s: list[float]) -> dict[str, float]:
    if not samples_s:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                "mean_ms": float("nan"), "max_ms": float("nan"), "n": 0}
    a = np.asarray(samples_s, dtype=float) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "max_ms": float(a.max()), "n": int(a.size)}


def read_apply_log(path: Path) -> dict[str, float]:
    """ticket_id → the worker's apply time in seconds."""
    out: dict[str, float] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            m = APPLIED_RE.search(line)
            if m:
                out[m.group(1)] = float(m.group(3)) / 1e3
    return out


def timing_keys(d: dict | None) -> dict[str, float]:
    """Numeric entries of a stats/extra dict that look like durations (…seconds, …_s, …_ms)."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                "second" in k or k.endswith("_s") or k.endswith("_ms")):
            out[k] = float(v)
    return out


# ----------------------------------------------------------------------------- the loop

def results_for(ticket: dict, group: int, log_ratios: bool, rng) -> list[dict]:
    out = []
    for p in ticket["problems"]:
        r = {"problem_id": p["problem_id"], "rewards": rng.integers(0, 2, group).tolist()}
        if log_ratios:
            r["log_ratios"] = rng.normal(0.0, 0.01, group).round(5).tolist()
        out.append(r)
    return out


def training_loop(url: str, run_id: int, token: str, args, log_ratios: bool,
                  label: str) -> list[dict]:
    """select → feedback → poll until applied, `args.steps` times; one record per step."""
    rng = np.random.default_rng(1)
    recs: list[dict] = []
    with httpx.Client(base_url=url, timeout=300,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        run = c.get(f"/v1/runs/{run_id}").json()
        version = run["model_version"]
        failed0 = run["tickets"].get("failed", 0)
        for i in range(args.steps):
            t0 = time.perf_counter()
            r = c.post(f"/v1/runs/{run_id}/select",
                       json={"batch_size": args.batch, "pool_size": args.pool})
            select_s = time.perf_counter() - t0
            r.raise_for_status()
            ticket = r.json()
            body = {"ticket_id": ticket["ticket_id"],
                    "results": results_for(ticket, args.group, log_ratios, rng)}
            t1 = time.perf_counter()
            r = c.post(f"/v1/runs/{run_id}/feedback", json=body)
            t_202 = time.perf_counter()
            wall_202 = time.time()
            if r.status_code != 202:
                raise RuntimeError(f"feedback: {r.status_code} {r.text[:300]}")
            polls = 0
            while True:
                polls += 1
                now = c.get(f"/v1/runs/{run_id}").json()
                if now["model_version"] > version:
                    break
                if now["tickets"].get("failed", 0) > failed0:
                    raise RuntimeError(f"ticket {ticket['ticket_id']} failed to apply")
                if time.perf_counter() - t_202 > args.apply_timeout:
                    raise RuntimeError(f"ticket not applied within {args.apply_timeout} s")
                time.sleep(args.poll_ms / 1e3)
            apply_poll_s = time.perf_counter() - t_202
            recs.append({"i": i, "step": ticket["step"], "ticket_id": ticket["ticket_id"],
                         "select_s": select_s, "feedback_s": t_202 - t1,
                         "apply_poll_s": apply_poll_s, "polls": polls, "wall_202": wall_202,
                         "version_before": version,
                         "select_model_version": ticket["model_version"],
                         "stats_timing": timing_keys(now.get("stats"))})
            version = now["model_version"]
            if (i + 1) % 10 == 0 or i + 1 == args.steps:
                done = recs[args.warmup:] or recs
                med = statistics.median(x["select_s"] for x in done) * 1e3
                print(f"\r  {label}: step {i + 1}/{args.steps}, select p50 {med:.1f} ms",
                      end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return recs


def summarize(recs: list[dict], warmup: int, applies: dict[str, float] | None = None,
              history: dict[int, dict] | None = None) -> dict:
    kept = recs[warmup:] if len(recs) > warmup else recs
    out = {"steps": len(recs), "measured": len(kept),
           "select": pct([r["select_s"] for r in kept]),
           "feedback": pct([r["feedback_s"] for r in kept]),
           "apply_poll": pct([r["apply_poll_s"] for r in kept]),
           "polls_mean": float(np.mean([r["polls"] for r in kept])) if kept else 0.0,
           # selects answered by an older model than the latest applied one
           "stale_selects": sum(r["select_model_version"] < r["version_before"] for r in kept)}
    if applies is not None:
        w = [applies[r["ticket_id"]] for r in kept if r["ticket_id"] in applies]
        out["apply_worker"] = pct(w)
    if history is not None:
        stamp, extra = [], defaultdict(list)
        for r in kept:
            h = history.get(r["step"])
            if h is None:
                continue
            if h.get("applied_at"):
                at = datetime.fromisoformat(h["applied_at"].replace("Z", "+00:00"))
                if at.tzinfo is None:
                    at = at.replace(tzinfo=timezone.utc)
                stamp.append(at.timestamp() - r["wall_202"])
            for k, v in timing_keys(h.get("extra")).items():
                extra[k].append(v)
        out["apply_stamp"] = pct(stamp)
        out["history_extra_timing"] = {k: float(np.median(v)) for k, v in extra.items()}
    st = defaultdict(list)
    for r in kept:
        for k, v in r["stats_timing"].items():
            st[k].append(v)
    out["run_stats_timing"] = {k: float(np.median(v)) for k, v in st.items()}
    return out


def run_history(url: str, run_id: int) -> dict[int, dict]:
    h = {"Authorization": f"Bearer {ADMIN}"}
    out: dict[int, dict] = {}
    after = None
    with httpx.Client(base_url=url, headers=h, timeout=300) as c:
        for _ in range(100):
            q = "limit=10000" + (f"&after={after}" if after is not None else "")
            r = c.get(f"/v1/runs/{run_id}/history?{q}")
            if r.status_code != 200:
                return out
            page = r.json()
            for p in page["points"]:
                out[p["step"]] = p
            after = page.get("next_after")
            if after is None:
                break
    return out


# ---------------------------------------------------------------------------- deployments

class Deployment:
    """A running service: url, admin headers, the apply log and the database URL."""

    def __init__(self, url: str, db_url: str, apply_log: Path, procs: list[Proc]) -> None:
        self.url, self.db_url, self.apply_log, self.procs = url, db_url, apply_log, procs

    def check(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} died: {p.log.read_text(errors='replace')[-2000:]}")


def base_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CURATOR_DATA_DIR": str(data_dir), "CURATOR_ADMIN_TOKEN": ADMIN,
           "CURATOR_DEVICE": "cpu", "CURATOR_LOG_LEVEL": "warning"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "service"), str(ROOT / "client"),
                                         env.get("PYTHONPATH", "")])
    env.pop(APPLY_LOG_ENV, None)
    for k in ("CURATOR_DATABASE_URL", "CURATOR_REDIS_URL", "CURATOR_EMBEDDED_WORKER"):
        env.pop(k, None)
    return env


def start_api(env: dict[str, str], logs: Path, name: str, app: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, [sys.executable, "-m", "uvicorn", app, "--factory", "--host",
                       "127.0.0.1", "--port", str(port), "--log-level", "warning",
                       "--no-access-log"], env, logs)
    return proc, f"http://127.0.0.1:{port}"


def import_bank(env: dict[str, str], parquet: Path, name: str, dim: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "curator.cli", "bank", "import", str(parquet),
                    "--bank", name, "--create", "--embedder", "provided", "--dim", str(dim)],
                   env=env, check=True, cwd=ROOT)
    return time.perf_counter() - t0


class Postgres:
    """One fresh database (and a private redis-server) for the whole bench run."""

    def __init__(self, args, logs: Path) -> None:
        self.args, self.logs = args, logs
        self.dbname = f"curator_loop_{uuid.uuid4().hex[:10]}"
        self.created = False
        self.redis: Proc | None = None
        self.redis_url = args.redis_url
        self.data_dir = logs / "pg-data"
        self.db_url = ""

    def __enter__(self) -> Postgres:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        base = conninfo_to_dict(self.args.pg)
        if base.get("host", "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("loopback only: --pg must point at 127.0.0.1")
        with psycopg.connect(self.args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.created = True
        self.db_url = (f"postgresql+psycopg://{base.get('user', 'postgres')}@"
                       f"{base.get('host', '127.0.0.1')}:{base.get('port', '5432')}/"
                       f"{self.dbname}")
        if self.redis_url is None:
            if shutil.which("redis-server") is None:
                raise SystemExit("no redis-server binary: pass --redis-url")
            port = free_port()
            self.redis = Proc("redis", ["redis-server", "--port", str(port), "--bind",
                                        "127.0.0.1", "--save", "", "--appendonly", "no"],
                              dict(os.environ), self.logs)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            wait_until(lambda: healthy_redis(port), 20, "redis", [self.redis])
        subprocess.run([sys.executable, "-m", "curator.cli", "migrate"], env=self.env(),
                       check=True, cwd=ROOT, capture_output=True)
        log(f"postgres: database {self.dbname}, redis {self.redis_url}")
        return self

    def env(self) -> dict[str, str]:
        env = base_env(self.data_dir)
        env.update({"CURATOR_DATABASE_URL": self.db_url, "CURATOR_REDIS_URL": self.redis_url,
                    "CURATOR_FEEDBACK_STREAM": f"curator:loop:{self.dbname}",
                    "CURATOR_WORKER_GROUP": "loop-workers",
                    "CURATOR_EMBEDDED_WORKER": "false", "CURATOR_MODE": "production"})
        return env

    def __exit__(self, *exc) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.created:
            import psycopg

            with psycopg.connect(self.args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            log(f"postgres: dropped {self.dbname}")


@contextlib.contextmanager
def deployment(topo: str, n: int, parquet: Path, args, logs: Path, pg: Postgres | None,
               imports: dict) -> Iterator[Deployment]:
    tag = f"{topo}-{n}"
    apply_log = logs / f"apply-{tag}.log"
    procs: list[Proc] = []
    tmp = None
    try:
        if topo == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix=f"curator-loop-{n}-", dir=args.tmp))
            env = base_env(tmp / "data")
            subprocess.run([sys.executable, "-m", "curator.cli", "migrate"], env=env,
                           check=True, cwd=ROOT, capture_output=True)
            db_url = f"sqlite:///{(tmp / 'data' / 'curator.db').resolve()}"
            api_env = {**env, APPLY_LOG_ENV: str(apply_log)}
            worker_env = None
        else:
            assert pg is not None
            env = pg.env()
            db_url = pg.db_url
            api_env = env
            worker_env = {**env, APPLY_LOG_ENV: str(apply_log)}
        log(f"\n== {tag}: importing {n:,} problems")
        imports[tag] = import_bank(env, parquet, f"loop-{n}", args.dim)
        log(f"  import {imports[tag]:.0f} s")
        t0 = time.perf_counter()
        api, url = start_api(api_env, logs, f"api-{tag}", "bench.loop_latency:curator_app")
        procs.append(api)
        workers = []
        if worker_env is not None:
            workers.append(Proc(f"worker-{tag}", [sys.executable, str(Path(__file__).resolve()),
                                                  "_worker"], worker_env, logs))
            procs += workers
        wait_until(lambda: healthy(url) and all(b"consuming" in w.log.read_bytes()
                                                for w in workers),
                   300, f"{tag} API and workers", procs)
        log(f"  {tag} up in {time.perf_counter() - t0:.1f} s (logs in {logs})")
        yield Deployment(url, db_url, apply_log, procs)
    finally:
        for p in reversed(procs):
            p.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------- cells

def bank_id_of(url: str, name: str) -> int:
    banks = httpx.get(url + "/v1/banks", headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=60).json()["banks"]
    return next(b["bank_id"] for b in banks if b["name"] == name)


def create_run(url: str, bank_id: int, strategy: str, name: str, params: dict | None = None
               ) -> tuple[int, str]:
    r = httpx.post(url + "/v1/runs", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60,
                   json={"bank_id": bank_id, "strategy": strategy, "params": params or {},
                         "seed": 1, "name": name})
    r.raise_for_status()
    return r.json()["run_id"], r.json()["token"]


def time_get(url: str, path: str, repeats: int) -> dict:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=600) as c:
        r = c.get(path)  # warm-up (and the size)
        r.raise_for_status()
        size = len(r.content)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            c.get(path).raise_for_status()
            samples.append(time.perf_counter() - t0)
    return {"path": path, **pct(samples), "min_ms": min(samples) * 1e3, "bytes": size}


def strategy_cell(dep: Deployment, bank_id: int, strategy: str, args, tag: str) -> dict:
    run_id, token = create_run(dep.url, bank_id, strategy, f"loop-{tag}-{strategy}")
    before = select_paths(dep.url)
    recs = training_loop(dep.url, run_id, token, args, strategy == "actor_curator",
                         f"{tag} {strategy}")
    after = select_paths(dep.url)
    dep.check()
    cell = summarize(recs, args.warmup, read_apply_log(dep.apply_log),
                     run_history(dep.url, run_id))
    cell["run_id"] = run_id
    cell["select_paths"] = {k: after[k] - before.get(k, 0.0) for k in after}
    dist = time_get(dep.url, f"/v1/runs/{run_id}/distribution?top=15&by=level", 3)
    cell["distribution_ms"] = dist["p50_ms"]
    s = cell["select"]
    log(f"  {tag} {strategy}: select p50 {s['p50_ms']:.1f} / p95 {s['p95_ms']:.1f} / p99 "
        f"{s['p99_ms']:.1f} ms; apply poll p50 {cell['apply_poll']['p50_ms']:.1f} ms, stamp "
        f"{cell['apply_stamp']['p50_ms']:.1f} ms, worker "
        f"{cell['apply_worker']['p50_ms']:.1f} ms; distribution {dist['p50_ms']:.0f} ms; "
        f"selects {cell['select_paths']}")
    return cell


def select_paths(url: str) -> dict[str, float]:
    """The API's counts of selects by how their pool was scored and drawn (/metrics)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("curator_select_pools{") or line.startswith(
                "curator_select_draws_ahead"):
            name, _, value = line.rpartition(" ")
            key = name.replace("curator_select_pools", "").replace("curator_", "")
            out[key.strip("{}").replace('"', "")] = float(value)
    return out


def noop_cell(args, logs: Path, tag: str) -> dict:
    env = {**os.environ, "NOOP_BATCH": str(args.batch)}
    proc, url = start_api(env, logs, f"noop-{tag}", "bench.loop_latency:noop_loop_app")
    try:
        wait_until(lambda: healthy(url), 120, "no-op app", [proc])
        recs = training_loop(url, 1, "x", args, False, f"no-op [{tag}]")
    finally:
        proc.stop()
    return summarize(recs, args.warmup)


# ------------------------------------------------------------------------------ history

async def _pipelined_steps(url: str, run_id: int, token: str, steps: int, batch: int,
                           pool: int, group: int, concurrency: int = 2) -> None:
    rng = np.random.default_rng(2)
    done = 0
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        async def trainer() -> None:
            nonlocal done
            while done < steps:
                done += 1
                r = await c.post(f"/v1/runs/{run_id}/select",
                                 json={"batch_size": batch, "pool_size": pool})
                r.raise_for_status()
                t = r.json()
                r = await c.post(f"/v1/runs/{run_id}/feedback", json={
                    "ticket_id": t["ticket_id"], "results": results_for(t, group, False, rng)})
                if r.status_code != 202:
                    raise RuntimeError(f"feedback: {r.status_code} {r.text[:300]}")
                if done % 50 == 0:
                    rate = done / (time.perf_counter() - t0)
                    print(f"\r  long run: {done}/{steps} HTTP steps ({rate:.1f}/s)", end="",
                          file=sys.stderr, flush=True)

        await asyncio.gather(*(trainer() for _ in range(concurrency)))
    print(file=sys.stderr)


def wait_applied(dep: Deployment, run_id: int, n: int, timeout: float) -> float:
    t0 = time.perf_counter()
    h = {"Authorization": f"Bearer {ADMIN}"}
    while time.perf_counter() - t0 < timeout:
        dep.check()
        t = httpx.get(f"{dep.url}/v1/runs/{run_id}", headers=h, timeout=60).json()["tickets"]
        if t.get("failed"):
            raise RuntimeError(f"{t['failed']} tickets failed to apply")
        if t["applied"] >= n:
            return time.perf_counter() - t0
        print(f"\r  long run: worker applied {t['applied']}/{n}", end="", file=sys.stderr,
              flush=True)
        time.sleep(1.0)
    raise RuntimeError("worker did not catch up")


def clone_steps(db_url: str, run_id: int, target: int) -> int:
    """Extend the run to `target` applied steps by copying its applied tickets, their items
    and history points (new ticket ids, steps, model versions) through the service's table
    definitions; then a checkpoint copy and the run row at the new step/version."""
    from sqlalchemy import create_engine, insert, select, update

    from curator.db.models import Checkpoint, HistoryPoint, Run, Ticket, TicketItem

    T, TI, H = Ticket.__table__, TicketItem.__table__, HistoryPoint.__table__
    C, R = Checkpoint.__table__, Run.__table__
    kw = {"connect_args": {"timeout": 120}} if db_url.startswith("sqlite") else {}
    eng = create_engine(db_url, **kw)
    try:
        with eng.connect() as c:
            run = c.execute(select(R).where(R.c.id == run_id)).mappings().one()
            seeds = [dict(t) for t in c.execute(
                select(T).where(T.c.run_id == run_id, T.c.state == "applied")
                .order_by(T.c.step)).mappings()]
            items: dict[str, list[dict]] = defaultdict(list)
            ids = [t["id"] for t in seeds]
            for i in range(0, len(ids), 500):
                for it in c.execute(select(TI).where(TI.c.ticket_id.in_(ids[i:i + 500]))
                                    .order_by(TI.c.ticket_id, TI.c.rank)).mappings():
                    items[it["ticket_id"]].append(dict(it))
            hist = {h["ticket_id"]: dict(h) for h in c.execute(
                select(H).where(H.c.run_id == run_id)).mappings()}
            parts = c.execute(select(C.c.selection, C.c.blob).where(
                C.c.run_id == run_id, C.c.version == run["model_version"])).first()
        step, version = int(run["step"]), int(run["model_version"])
        added = 0
        t0 = time.perf_counter()
        while version < target:
            rows_t, rows_i, rows_h = [], [], []
            for _ in range(min(250, target - version)):
                tpl = seeds[added % len(seeds)]
                step += 1
                version += 1
                added += 1
                tid = uuid.uuid4().hex
                rows_t.append({**tpl, "id": tid, "step": step, "model_version": version - 1})
                rows_i += [{**it, "ticket_id": tid} for it in items[tpl["id"]]]
                h = dict(hist[tpl["id"]])
                h.pop("id", None)
                h.update(ticket_id=tid, step=step, model_version=version)
                rows_h.append(h)
            with eng.begin() as c:
                c.execute(insert(T), rows_t)
                c.execute(insert(TI), rows_i)
                c.execute(insert(H), rows_h)
            print(f"\r  long run: cloned to {version}/{target} steps "
                  f"({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        with eng.begin() as c:
            if parts is not None:
                c.execute(insert(C).values(run_id=run_id, version=version,
                                           selection=parts[0], blob=parts[1]))
            c.execute(update(R).where(R.c.id == run_id).values(step=step,
                                                                model_version=version))
        return added
    finally:
        eng.dispose()


def history_cell(dep: Deployment, bank_id: int, args, tag: str) -> dict:
    steps = args.history_steps
    seed = steps if args.history_build == "http" else min(args.history_seed_steps, steps)
    run_id, token = create_run(dep.url, bank_id, "uniform", f"long-{tag}")
    t0 = time.perf_counter()
    asyncio.run(_pipelined_steps(dep.url, run_id, token, seed, args.history_batch, args.pool,
                                 args.group))
    http_s = time.perf_counter() - t0
    drain = wait_applied(dep, run_id, seed, timeout=max(600.0, seed * 2.0))
    print(file=sys.stderr)
    cloned, clone_s = 0, 0.0
    if seed < steps:
        t1 = time.perf_counter()
        cloned = clone_steps(dep.db_url, run_id, steps)
        clone_s = time.perf_counter() - t1
    build = {"http_steps": seed, "http_s": http_s, "drain_s": drain, "cloned_steps": cloned,
             "clone_s": clone_s, "batch": args.history_batch}
    log(f"  long run {run_id}: {seed} HTTP steps in {http_s:.0f} s (+{drain:.0f} s drain), "
        f"{cloned} cloned in {clone_s:.0f} s")
    base = f"/v1/runs/{run_id}"
    last = max(steps - 1000, 0)
    paths = {
        "history limit=1000 (first page)": f"{base}/history?limit=1000",
        "history limit=1000&by=level (first page)": f"{base}/history?limit=1000&by=level",
        "history limit=1000 (last page)": f"{base}/history?limit=1000&after={last}",
        "history limit=1000&by=level (last page)":
            f"{base}/history?limit=1000&after={last}&by=level",
        "distribution": f"{base}/distribution",
        "distribution?top=15&by=level (dashboard)": f"{base}/distribution?top=15&by=level",
        "GET /v1/runs": "/v1/runs",
    }
    timings = {}
    for name, path in paths.items():
        timings[name] = time_get(dep.url, path, args.history_repeats)
        log(f"  {name}: p50 {timings[name]['p50_ms']:.1f} ms "
            f"({timings[name]['bytes'] / 1e3:.0f} kB)")
    # the dashboard's full history load: limit=5000 pages with &by, until next_after is null
    h = {"Authorization": f"Bearer {ADMIN}"}
    loads = []
    with httpx.Client(base_url=dep.url, headers=h, timeout=600) as c:
        for _ in range(max(1, args.history_repeats // 2)):
            t1 = time.perf_counter()
            after, pages, total = None, 0, 0
            while True:
                q = "limit=5000&by=level" + (f"&after={after}" if after is not None else "")
                page = c.get(f"{base}/history?{q}").json()
                pages += 1
                total = page["total"]
                after = page.get("next_after")
                if after is None:
                    break
            loads.append(time.perf_counter() - t1)
    timings["dashboard history load (limit=5000 pages, by=level)"] = {
        "path": f"{base}/history?limit=5000&by=level (+after…)", **pct(loads),
        "min_ms": min(loads) * 1e3, "pages": pages, "bytes": 0}
    log(f"  dashboard history load: {pages} pages, p50 {pct(loads)['p50_ms']:.0f} ms")
    return {"run_id": run_id, "steps": steps, "total_points": total, "build": build,
            "timings": timings}


# -------------------------------------------------------------------------------- report

def fmt(x: float, d: int = 1) -> str:
    return "—" if x is None or x != x else f"{x:.{d}f}"


def report(res: dict) -> str:
    a = res["args"]
    noop = res["noop"]
    lines = [
        "# Select latency inside a training loop (`bench/loop_latency.py`)", "",
        f"`python bench/loop_latency.py {' '.join(res.get('argv', []))}`".replace(" `", "`"),
        "",
        f"{res['when']}, commit {res['commit']}, {res['machine']['cores']} CPU cores, "
        f"load average at start {res['machine']['loadavg_start']}. Each step: select "
        f"(timed) → feedback (G={a['group']} rewards per problem; `actor_curator` also "
        f"log_ratios) → poll GET /v1/runs/{{run}} every {a['poll_ms']:g} ms until "
        f"model_version advances; batch {a['batch']} of pool {a['pool']}, "
        f"{a['steps']} steps per run, the first {a['warmup']} excluded; 384-d random unit "
        f"vectors (dim {a['dim']}). Ratios are to the no-op's select p50 measured around "
        "each block (same request pattern against bench/noop_app.py + no-op "
        "feedback/run endpoints).", "",
        "Apply columns: *poll* = feedback 202 → new version visible to the client; "
        "*stamp* = history `applied_at` − client clock at the 202 (same machine); "
        "*worker* = the worker's own apply time (its log line). *stale* = selects answered "
        "by an older model than the last applied one.", "",
        "| topology | problems | strategy | select p50 ms | p95 | p99 | p50 ×no-op | "
        "p95 ×no-op | p99 ×no-op | apply poll p50 ms | apply ×no-op | apply stamp p50 ms | "
        "worker apply p50 ms | stale | distribution ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for block in res["blocks"]:
        base = block["noop_p50_ms"]
        for name, c in block["cells"].items():
            head = f"| {block['topology']} | {block['problems']:,} | {name} |"
            if "error" in c:
                lines.append(f"{head} error: {c['error'][:120]} |" + " |" * 11)
                continue
            s, ap = c["select"], c["apply_poll"]
            lines.append(
                f"{head} {fmt(s['p50_ms'])} | {fmt(s['p95_ms'])} | {fmt(s['p99_ms'])} | "
                f"{fmt(s['p50_ms'] / base)}× | {fmt(s['p95_ms'] / base)}× | "
                f"{fmt(s['p99_ms'] / base)}× | {fmt(ap['p50_ms'])} | "
                f"{fmt(ap['p50_ms'] / base)}× | {fmt(c['apply_stamp']['p50_ms'])} | "
                f"{fmt(c['apply_worker']['p50_ms'])} | {c['stale_selects']}/{c['measured']} | "
                f"{fmt(c['distribution_ms'], 0)} |")
    lines += ["", "No-op baseline (select p50 / p95 / p99 ms, same loop):", "",
              "| measured before | p50 | p95 | p99 |", "|---|---|---|---|"]
    for n in noop:
        s = n["select"]
        lines.append(f"| {n['tag']} | {fmt(s['p50_ms'], 2)} | {fmt(s['p95_ms'], 2)} | "
                     f"{fmt(s['p99_ms'], 2)} |")
    extra = {f"{b['topology']}-{b['problems']} {k}": (c.get("history_extra_timing"),
                                                       c.get("run_stats_timing"))
             for b in res["blocks"] for k, c in b["cells"].items() if "error" not in c}
    if any(h or s for h, s in extra.values()):
        lines += ["", "Per-update timings exposed by the service (median):", ""]
        for k, (h, s) in extra.items():
            if h or s:
                lines.append(f"- {k}: history extra {h or {}}, run stats {s or {}}")
    else:
        lines += ["", "Neither the history points' `extra` nor the run's `stats` exposes a "
                  "per-update duration; the *worker* column comes from the worker's debug log."]
    if res["imports"]:
        lines += ["", "Bank import (`curator bank import`, provided vectors): " + ", ".join(
            f"{k} {v:.0f} s" for k, v in res["imports"].items()) + "."]
    for hc in res["history"]:
        if "error" in hc:
            lines += ["", f"Admin endpoints on a long run ({hc['topology']}): "
                      f"error: {hc['error']}"]
            continue
        b = hc["build"]
        lines += [
            "", f"## Admin endpoints on a {hc['steps']:,}-step run ({hc['topology']}, "
            f"{hc['problems']:,}-problem bank, batch {b['batch']})", "",
            f"Built with {b['http_steps']:,} real HTTP steps (select → feedback, `uniform`, "
            f"pipelined; {b['http_s']:.0f} s + {b['drain_s']:.0f} s for the worker to drain)"
            + (f" and {b['cloned_steps']:,} steps cloned from them in the database "
               f"({b['clone_s']:.0f} s: tickets, items, history points copied with new ids, "
               "steps and versions)" if b["cloned_steps"] else "")
            + f". History total: {hc['total_points']:,} points. "
            f"{a['history_repeats']} timed requests each after one warm-up.", "",
            "| request | p50 ms | min ms | response kB |", "|---|---|---|---|"]
        for name, t in hc["timings"].items():
            kb = f"{t['bytes'] / 1e3:.0f}" if t["bytes"] else "—"
            lines.append(f"| {name} | {fmt(t['p50_ms'])} | {fmt(t['min_ms'])} | {kb} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="10k problems, sqlite only, 30 steps (5 warm-up), 2,000-step long run")
    ap.add_argument("--sizes", default=None, help="default 10000,100000,1000000")
    ap.add_argument("--strategies", default=ALL_STRATEGIES)
    ap.add_argument("--steps", type=int, default=None, help="default 60 (quick: 30)")
    ap.add_argument("--warmup", type=int, default=None, help="default 10 (quick: 5)")
    ap.add_argument("--topologies", default=None, help="sqlite,postgres (quick: sqlite)")
    ap.add_argument("--history-steps", type=int, default=None,
                    help="long run for the admin endpoints; 0 skips (default 10000, quick 2000)")
    ap.add_argument("--history-build", choices=["clone", "http"], default="clone")
    ap.add_argument("--history-seed-steps", type=int, default=200,
                    help="real HTTP steps before cloning")
    ap.add_argument("--history-batch", type=int, default=256)
    ap.add_argument("--history-repeats", type=int, default=5)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--group", type=int, default=8, help="rollouts per problem (G)")
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--apply-timeout", type=float, default=120.0)
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=test",
                    help="libpq DSN of a role allowed to create databases (loopback only)")
    ap.add_argument("--redis-url", default=None,
                    help="default: a private redis-server on a free loopback port")
    ap.add_argument("--tmp", default=None, help="where banks and SQLite files go")
    ap.add_argument("--keep-logs", action="store_true", help="keep server/worker logs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "loop_latency.json"))
    args = ap.parse_args(argv)
    q = args.quick
    args.sizes = args.sizes or ("10000" if q else "10000,100000,1000000")
    args.topologies = args.topologies or ("sqlite" if q else "sqlite,postgres")
    args.steps = args.steps or (30 if q else 60)
    args.warmup = args.warmup if args.warmup is not None else (5 if q else 10)
    if args.history_steps is None:
        args.history_steps = 2000 if q else 10_000
    if args.steps <= args.warmup:
        ap.error("--steps must exceed --warmup")
    bad = set(args.topologies.split(",")) - {"sqlite", "postgres"}
    if bad:
        ap.error(f"unknown topologies {sorted(bad)}")
    return args


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "service", "migrations"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "?") + (" + uncommitted service changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:  # the separate `curator worker`, with the apply log
        _install_apply_log()
        from curator.cli import main as cli

        return cli(["worker"])
    args = parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    topologies = args.topologies.split(",")
    strategies = args.strategies.split(",")
    logs = Path(tempfile.mkdtemp(prefix="curator-loop-logs-", dir=args.tmp))
    res: dict = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "commit": git_commit(),
                 "machine": {"cores": os.cpu_count(),
                             "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg())},
                 "argv": argv, "args": vars(args), "noop": [], "blocks": [], "history": [],
                 "imports": {}}
    t_all = time.perf_counter()
    ok = True
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(Postgres(args, logs)) if "postgres" in topologies else None
        for n in sizes:
            bank_dir = Path(tempfile.mkdtemp(prefix=f"curator-loop-bank-{n}-", dir=args.tmp))
            try:
                parquet = bank_dir / "bank.parquet"
                log(f"\n== {n:,} problems × {args.dim}-d: writing parquet")
                write_parquet(parquet, n, args.dim, levels=LEVELS, chunk=50_000, progress=True)
                for topo in topologies:
                    tag = f"{topo}-{n}"
                    noop = noop_cell(args, logs, f"before {tag}")
                    noop["tag"] = f"before {tag}"
                    res["noop"].append(noop)
                    block = {"topology": topo, "problems": n, "cells": {},
                             "noop_index": len(res["noop"]) - 1}
                    res["blocks"].append(block)
                    with deployment(topo, n, parquet, args, logs, pg, res["imports"]) as dep:
                        bank_id = bank_id_of(dep.url, f"loop-{n}")
                        for name in strategies:
                            try:
                                block["cells"][name] = strategy_cell(dep, bank_id, name, args,
                                                                     tag)
                            except Exception as exc:  # record and go on with the others
                                ok = False
                                log(f"\n  {tag} {name} FAILED: {type(exc).__name__}: {exc}")
                                block["cells"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                        if n == sizes[0] and args.history_steps > 0:
                            try:
                                hc = history_cell(dep, bank_id, args, tag)
                            except Exception as exc:
                                ok = False
                                log(f"\n  {tag} long run FAILED: {type(exc).__name__}: {exc}")
                                hc = {"error": f"{type(exc).__name__}: {exc}"}
                            res["history"].append({"topology": topo, "problems": n, **hc})
            finally:
                shutil.rmtree(bank_dir, ignore_errors=True)
    noop = noop_cell(args, logs, "end")
    noop["tag"] = "end"
    res["noop"].append(noop)
    for block in res["blocks"]:
        i = block["noop_index"]
        block["noop_p50_ms"] = (res["noop"][i]["select"]["p50_ms"]
                                + res["noop"][i + 1]["select"]["p50_ms"]) / 2
    res["wall_s"] = time.perf_counter() - t_all
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    md = report(res) + f"\nTotal wall time {res['wall_s'] / 60:.1f} min.\n"
    out.with_suffix(".md").write_text(md)
    print("\n" + md)
    if ok and not args.keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
        log(f"wrote {out} and {out.with_suffix('.md')}")
    else:
        log(f"wrote {out} and {out.with_suffix('.md')}; logs kept in {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
