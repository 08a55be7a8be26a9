"""How many tickets a worker applies per second, and whether one keeps up with many runs.

A trainer step is select → generate → feedback; the worker must apply each run's ticket
before that run's next select, or the curriculum falls behind (the API still serves the
last version). With R runs at a trainer step of T seconds, the worker must apply R / T
tickets a second: 20 runs at a 2 s step need 10/s.

This bench fills a bank, creates R runs, reports K tickets of batch B per run (rewards
and log-ratios for G rollouts each, as the TRL integration sends them) through the real
API with no worker running, then times the real `Updater` applying them: one worker
thread in the order a queue would deliver them (runs interleaved), and W threads sharing
them (what several `curator worker` processes sharing the Redis consumer group do; a
run's tickets are still applied one at a time, in order, under its lock).

    python bench/worker_capacity.py                    # SQLite, 20 runs × 6 tickets, B 256
    python bench/worker_capacity.py --database-url postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tickets", type=int, default=6, help="tickets per run")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--group", type=int, default=8, help="rollouts per problem (G)")
    ap.add_argument("--bank", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384, help="embedding dim (MiniLM's 384)")
    ap.add_argument("--strategy", default="actor_curator")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--step-s", type=float, default=2.0, help="trainer step to keep up with")
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/worker_capacity.md")
    return ap.parse_args()


async def fill(app, args, admin: str) -> list[str]:
    """Bank, runs, and K reported tickets per run, interleaved by step; their ids."""
    headers = {"Authorization": f"Bearer {admin}"}
    rng = np.random.default_rng()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://c", timeout=600) as c:
        r = await c.post("/v1/banks", headers=headers,
                         json={"name": f"cap-{rng.integers(1 << 30)}", "embedder": "provided",
                               "dim": args.dim})
        bank = r.json()["bank_id"]
        vecs = rng.standard_normal((args.bank, args.dim)).astype(np.float32)
        for lo in range(0, args.bank, 2000):
            r = await c.post(f"/v1/banks/{bank}/problems", headers=headers, json={"problems": [
                {"external_id": f"q{i}", "prompt": f"problem {i}",
                 "embedding": vecs[i].round(4).tolist()}
                for i in range(lo, min(args.bank, lo + 2000))]})
            assert r.status_code == 200, r.text
        runs = []
        for k in range(args.runs):
            r = await c.post("/v1/runs", headers=headers, json={
                "bank_id": bank, "strategy": args.strategy, "seed": k,
                "params": {"dormant_steps": 0} if args.strategy == "actor_curator" else {}})
            runs.append((r.json()["run_id"], r.json()["token"]))
        order = []
        for _ in range(args.tickets):
            for run_id, token in runs:
                t = (await c.post(f"/v1/runs/{run_id}/select", json={
                    "batch_size": args.batch, "pool_size": 4 * args.batch},
                    headers={"Authorization": f"Bearer {token}"})).json()
                p = 1 / (1 + np.exp(-rng.standard_normal(args.batch)))
                rewards = (rng.random((args.batch, args.group)) < p[:, None]).astype(float)
                ratios = rng.standard_normal((args.batch, args.group)) * 0.01
                r = await c.post(f"/v1/runs/{run_id}/feedback", headers={
                    "Authorization": f"Bearer {token}"}, json={
                    "ticket_id": t["ticket_id"], "results": [
                        {"problem_id": q["problem_id"], "rewards": rewards[i].tolist(),
                         "log_ratios": ratios[i].round(5).tolist()}
                        for i, q in enumerate(t["problems"])]})
                assert r.status_code == 202, r.text
                order.append(t["ticket_id"])
    return order


def measure(updater, tickets: list[str], threads: int) -> float:
    """Seconds to apply `tickets` with `threads` workers taking them in queue order."""
    t0 = time.perf_counter()
    if threads == 1:
        for tid in tickets:
            updater.apply(tid)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(updater.apply, tickets))
    return time.perf_counter() - t0


def main() -> int:
    args = parse()
    tmp = tempfile.mkdtemp(prefix="curator-cap-")
    os.environ.setdefault("CURATOR_DATA_DIR", tmp)
    os.environ["CURATOR_EMBEDDED_WORKER"] = "false"
    os.environ["CURATOR_ADMIN_TOKEN"] = admin = "bench-admin"
    if args.database_url:
        os.environ["CURATOR_DATABASE_URL"] = args.database_url
    import torch

    from curator.app import build_state, create_app
    from curator.core.config import Settings
    from curator.db.migrate import upgrade
    from curator.worker.updater import Updater

    settings = Settings()
    upgrade(settings.sqlalchemy_url)
    app = create_app(settings)
    rows = []

    async def fill_all():
        async with app.router.lifespan_context(app):
            return [await fill(app, args, admin) for _ in args.threads]

    print(f"filling: {args.runs} runs × {args.tickets} tickets × B {args.batch}, "
          f"G {args.group}, bank {args.bank} × dim {args.dim} …", flush=True)
    t0 = time.perf_counter()
    batches = asyncio.run(fill_all())
    print(f"  filled in {time.perf_counter() - t0:.0f} s", flush=True)
    state = build_state(settings)
    torch.set_num_threads(1)
    for threads, tickets in zip(args.threads, batches, strict=True):
        updater = Updater(state.session_factory, state.files, "cpu")
        seconds = measure(updater, tickets, threads)
        rate = len(tickets) / seconds
        need = args.runs / args.step_s
        rows.append({"threads": threads, "tickets": len(tickets), "seconds": seconds,
                     "applies_per_s": rate, "ms_per_apply": 1e3 * seconds / len(tickets),
                     "needed_per_s": need, "keeps_up": rate >= need})
        print(f"  {threads} worker thread(s): {rate:.1f} applies/s "
              f"({1e3 * seconds / len(tickets):.0f} ms each); {args.runs} runs at a "
              f"{args.step_s:g} s step need {need:.1f}/s", flush=True)
    db = "PostgreSQL" if args.database_url else "SQLite"
    lines = [f"# Worker capacity ({args.strategy}, B {args.batch}, G {args.group}, {db})", "",
             f"`python bench/worker_capacity.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
             "", f"{args.runs} runs × {args.tickets} tickets, bank {args.bank} × dim "
             f"{args.dim}; {os.cpu_count()} CPU cores; torch threads 1.", "",
             "| worker threads | applies/s | ms per apply | needed for "
             f"{args.runs} runs at {args.step_s:g} s | keeps up |", "|---|---|---|---|---|"]
    lines += [f"| {r['threads']} | {r['applies_per_s']:.1f} | {r['ms_per_apply']:.0f} | "
              f"{r['needed_per_s']:.1f} | {'yes' if r['keeps_up'] else 'no'} |" for r in rows]
    lines += ["", "Ratio, 2 threads / 1: "
              f"{rows[-1]['applies_per_s'] / rows[0]['applies_per_s']:.2f}" if len(rows) > 1
              else ""]
    args.out.write_text("\n".join(lines) + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
