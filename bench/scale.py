"""Scale benchmark: select latency/throughput at 10k, 100k and 1M problems, feedback
throughput, worker update time, server RSS and import time.

Every figure comes with a baseline measured in the same run: a no-op FastAPI endpoint
that returns a select-sized payload (bench/noop_app.py), also a real uvicorn process.

    python bench/scale.py [--sizes 10000,100000,1000000] [--dim 384] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, percentiles, server, write_parquet  # noqa: E402

ADMIN = "bench-admin"
CURATOR = str(Path(sys.executable).parent / "curator")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_pid(port: int) -> int:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    text = out.stdout
    return int(text.split("pid=")[1].split(",")[0])


async def select_load(url: str, run_id: int, token: str, n: int, concurrency: int,
                      batch: int, pool: int) -> dict:
    lat: list[float] = []
    tickets: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        for _ in range(3):  # warm-up
            await c.post(f"/v1/runs/{run_id}/select", json={"batch_size": batch,
                                                           "pool_size": pool})
        todo = iter(range(n))

        async def worker():
            for _ in todo:
                t0 = time.perf_counter()
                r = await c.post(f"/v1/runs/{run_id}/select",
                                 json={"batch_size": batch, "pool_size": pool})
                lat.append(time.perf_counter() - t0)
                r.raise_for_status()
                tickets.append(r.json())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {**percentiles(lat), "rps": n / wall, "tickets": tickets}


async def feedback_load(url: str, run_id: int, token: str, tickets: list[dict],
                        concurrency: int, group: int = 8) -> dict:
    rng = np.random.default_rng(0)
    bodies = [{"ticket_id": t["ticket_id"], "results": [
        {"problem_id": p["problem_id"], "rewards": rng.integers(0, 2, group).tolist(),
         "log_ratios": rng.normal(0, 0.01, group).round(5).tolist()} for p in t["problems"]]}
        for t in tickets]
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        todo = iter(bodies)

        async def worker():
            for body in todo:
                r = await c.post(f"/v1/runs/{run_id}/feedback", json=body)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    items = sum(len(b["results"]) for b in bodies)
    return {"results_per_s": items / wall, "tickets": len(bodies), "seconds": wall}


def wait_applied(url: str, run_id: int, token: str, n: int, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        while time.perf_counter() - t0 < timeout:
            if c.get(f"/v1/runs/{run_id}").json()["tickets"]["applied"] >= n:
                return time.perf_counter() - t0
            time.sleep(0.2)
    raise RuntimeError("worker did not catch up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--strategies", default="uniform,actor_curator")
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.concurrency.split(",")]
    results: dict = {"machine": {"cores": os.cpu_count()}, "args": vars(args), "sizes": {}}

    def noop(tag: str) -> None:
        with server({"NOOP_BATCH": str(args.batch)}, app="bench.noop_app:create_app") as url:
            for conc in concs:
                r = asyncio.run(select_load(url, 1, "x", args.requests, conc, args.batch,
                                            args.pool))
                r.pop("tickets")
                results.setdefault("noop", {}).setdefault(tag, {})[f"c{conc}"] = r
                print(f"noop[{tag}] c={conc}: p50 {r['p50_ms']:.2f} ms, p99 "
                      f"{r['p99_ms']:.2f} ms, {r['rps']:.0f} req/s", file=sys.stderr)

    noop("before")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = {**os.environ, "CURATOR_DATA_DIR": str(tmp / "data"),
                   "CURATOR_ADMIN_TOKEN": ADMIN, "CURATOR_DEVICE": "cpu",
                   "CURATOR_LOG_LEVEL": "warning"}
            if args.database_url:
                env["CURATOR_DATABASE_URL"] = args.database_url
            print(f"\n== {n} problems: writing parquet", file=sys.stderr)
            write_parquet(tmp / "bank.parquet", n, args.dim)
            subprocess.run([CURATOR, "migrate"], env=env, check=True, capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([CURATOR, "bank", "import", str(tmp / "bank.parquet"), "--bank",
                            "scale", "--create", "--embedder", "provided", "--dim",
                            str(args.dim)], env=env, check=True)
            import_s = time.perf_counter() - t0
            row = {"import_s": import_s, "strategies": {}}
            with server(env) as url:
                port = int(url.rsplit(":", 1)[1])
                pid = server_pid(port)
                h = {"Authorization": f"Bearer {ADMIN}"}
                bank_id = httpx.get(url + "/v1/banks", headers=h).json()["banks"][0]["bank_id"]
                for name in args.strategies.split(","):
                    params = {"dormant_steps": 0} if name == "actor_curator" else {}
                    run = httpx.post(url + "/v1/runs", headers=h, json={
                        "bank_id": bank_id, "strategy": name, "params": params}).json()
                    entry = {}
                    tickets = []
                    for conc in concs:
                        r = asyncio.run(select_load(url, run["run_id"], run["token"],
                                                    args.requests, conc, args.batch, args.pool))
                        tickets += r.pop("tickets")
                        entry[f"c{conc}"] = r
                        print(f"{n} {name} c={conc}: p50 {r['p50_ms']:.2f} ms, p99 "
                              f"{r['p99_ms']:.2f} ms, {r['rps']:.0f} req/s", file=sys.stderr)
                    fb = asyncio.run(feedback_load(url, run["run_id"], run["token"],
                                                   tickets[:100], concurrency=8))
                    drain = wait_applied(url, run["run_id"], run["token"], 100)
                    fb["worker_drain_s"] = drain
                    entry["feedback"] = fb
                    print(f"{n} {name} feedback: {fb['results_per_s']:.0f} results/s; worker "
                          f"applied 100 tickets in {drain:.1f} s", file=sys.stderr)
                    row["strategies"][name] = entry
                row["server_rss_mb"] = rss_mb(pid)
                print(f"{n}: server RSS {row['server_rss_mb']:.0f} MB, import "
                      f"{import_s:.0f} s", file=sys.stderr)
            results["sizes"][str(n)] = row
    noop("after")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict) -> None:
    noop = results["noop"]
    for conc in results["args"]["concurrency"].split(","):
        key = f"c{conc}"
        base_p50 = (noop["before"][key]["p50_ms"] + noop["after"][key]["p50_ms"]) / 2
        base_rps = (noop["before"][key]["rps"] + noop["after"][key]["rps"]) / 2
        print(f"\nconcurrency {conc}: no-op p50 {base_p50:.2f} ms, {base_rps:.0f} req/s\n")
        print("| problems | strategy | p50 ms | p99 ms | req/s | p50 vs no-op | "
              "throughput vs no-op |")
        print("|---|---|---|---|---|---|---|")
        for n, row in results["sizes"].items():
            for name, e in row["strategies"].items():
                r = e[key]
                print(f"| {int(n):,} | {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                      f"{r['rps']:.0f} | {r['p50_ms'] / base_p50:.1f}x | "
                      f"{100 * r['rps'] / base_rps:.0f}% |")
    print("\n| problems | import s | server RSS MB | feedback results/s (uniform) | "
          "worker: 100 actor_curator tickets applied in s |")
    print("|---|---|---|---|---|")
    for n, row in results["sizes"].items():
        s = row["strategies"]
        fb = s.get("uniform", next(iter(s.values())))["feedback"]["results_per_s"]
        drain = s.get("actor_curator", {}).get("feedback", {}).get("worker_drain_s", float("nan"))
        print(f"| {int(n):,} | {row['import_s']:.0f} | {row['server_rss_mb']:.0f} | {fb:.0f} | "
              f"{drain:.1f} |")


if __name__ == "__main__":
    main()
