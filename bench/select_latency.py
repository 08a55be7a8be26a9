"""Select latency (batch 256, pool 2048) against a no-op endpoint of the same payload size.

Both servers are real uvicorn processes on loopback, measured in the same run; the
figure to read is the ratio, not the absolute milliseconds (the machine is noisy).

    python bench/select_latency.py [--problems 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, percentiles, server, time_calls  # noqa: E402

ADMIN = "bench-admin"


def build_bank(url: str, n: int, dim: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    h = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, headers=h, timeout=120) as c:
        bank_id = c.post("/v1/banks", json={"name": "bench", "embedder": "provided",
                                            "dim": dim}).json()["bank_id"]
        chunk = 10_000
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            vecs = rng.standard_normal((k, dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            probs = [{"external_id": f"bench-{start + i:07d}",
                      "prompt": f"Compute {start + i} + {i * 7 % 13} * {i % 5} and simplify.",
                      "answer": str(i), "metadata": {"difficulty": i % 5, "skill": i % 8},
                      "embedding": vecs[i].round(5).tolist()} for i in range(k)]
            r = c.post(f"/v1/banks/{bank_id}/problems", json={"problems": probs})
            r.raise_for_status()
            print(f"\r  bank: {start + k}/{n} problems", end="", file=sys.stderr, flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return bank_id


def measure(url: str, run_id: int, token: str, batch: int, pool: int, n: int) -> list[float]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as c:
        def call():
            r = c.post(f"/v1/runs/{run_id}/select", json={"batch_size": batch,
                                                           "pool_size": pool})
            r.raise_for_status()
        return time_calls(call, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--strategies", default="uniform,actor_curator")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "select_latency.json"))
    args = ap.parse_args()

    results: dict[str, dict] = {}
    with server({"NOOP_BATCH": str(args.batch)}, app="bench.noop_app:create_app") as url:
        results["noop"] = percentiles(measure(url, 1, "x", args.batch, args.pool,
                                              args.requests))
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CURATOR_DATA_DIR": tmp, "CURATOR_ADMIN_TOKEN": ADMIN, "CURATOR_DEVICE": "cpu"}
        from curator.cli import migrate
        from curator.core.config import Settings

        migrate(Settings(data_dir=Path(tmp)))
        with server(env) as url:
            bank_id = build_bank(url, args.problems, args.dim)
            h = {"Authorization": f"Bearer {ADMIN}"}
            for name in args.strategies.split(","):
                # dormant_steps=0 so the curator scores and samples from the first select
                params = {"dormant_steps": 0} if name == "actor_curator" else {}
                run = httpx.post(url + "/v1/runs", headers=h, json={
                    "bank_id": bank_id, "strategy": name, "params": params, "seed": 1}).json()
                results[name] = percentiles(measure(url, run["run_id"], run["token"],
                                                    args.batch, args.pool, args.requests))
        with server({"NOOP_BATCH": str(args.batch)}, app="bench.noop_app:create_app") as url:
            results["noop_again"] = percentiles(measure(url, 1, "x", args.batch, args.pool,
                                                        args.requests))
    base = (results["noop"]["p50_ms"] + results["noop_again"]["p50_ms"]) / 2
    print(f"\nselect latency: {args.problems} problems, batch {args.batch}, pool {args.pool}, "
          f"{args.requests} sequential requests\n")
    print("| endpoint | p50 ms | p99 ms | p50 / no-op p50 |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p50_ms'] / base:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
