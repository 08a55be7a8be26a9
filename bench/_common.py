"""Shared benchmark plumbing: a real uvicorn server in a subprocess, timing helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(env: dict[str, str], app: str = "curator.app:create_app",
           factory: bool = True) -> Iterator[str]:
    """Start `uvicorn app` on a free loopback port; yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    if factory:
        cmd.append("--factory")
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, tries=300)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wait_healthy(url: str, proc: subprocess.Popen, *, tries: int = 300,
                 log: Path | None = None) -> None:
    """Poll `url`/healthz until it answers 200; RuntimeError (with the tail of `log`) if
    the process exits first or `tries` polls pass."""
    for _ in range(tries):
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None else ""
            raise RuntimeError(f"the server on {url} exited: {tail}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {url} did not start")


def percentiles(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def time_calls(call, n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def write_parquet(path: Path, n: int, dim: int, seed: int = 0, *,
                  levels: list[str] | None = None, chunk: int = 100_000,
                  progress: bool = False) -> None:
    """n problems with random unit vectors, metadata `difficulty` (1–5) and, given
    `levels`, a random `level`; written in chunks (a 1M bank never sits in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        vecs = rng.standard_normal((k, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = np.arange(start, start + k)
        columns = {
            "id": [f"p{i:08d}" for i in ids],
            "prompt": [f"Compute {i} + {i % 13} * {i % 7} and simplify the result." for i in ids],
            "answer": [str(i) for i in ids],
            "difficulty": (ids % 5 + 1).tolist(),
        }
        if levels is not None:
            columns["level"] = [levels[j] for j in rng.integers(0, len(levels), k)]
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        if progress:
            print(f"\r  parquet: {start + k:,}/{n:,} problems", end="", file=sys.stderr,
                  flush=True)
    writer.close()
    if progress:
        print(file=sys.stderr)
