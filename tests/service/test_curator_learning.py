"""The learned curator through the real API: it learns, and survives a server kill."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from curator.curation.sampler import softmax
from curator.curation.strategies import build_strategy
from curator.curation.types import Pool
from curator.db.models import Checkpoint, HistoryPoint, Run
from curator.runs.strategy_store import checkpoint_state
from tests.service.helpers import AUTH, bearer, running_app

pytestmark = pytest.mark.anyio

DIM = 16
N = 400
GOOD_SHARE = 0.25


def cluster_bank(seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Four clusters of equal size; cluster 0 is the one that always improves the policy."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, DIM)) * 3
    labels = np.arange(N) % 4
    vecs = centres[labels] + rng.standard_normal((N, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    problems = [{"external_id": f"c{labels[i]}-{i}", "prompt": f"problem {i}",
                 "metadata": {"cluster": int(labels[i])},
                 "embedding": vecs[i].round(6).tolist()} for i in range(N)]
    return problems, labels


def curator_mass(url: str, run_id: int, labels: np.ndarray, vecs: np.ndarray) -> float:
    """Softmax mass of the newest checkpoint over the whole bank on the good cluster."""
    engine = create_engine(url)
    with Session(engine) as s:
        run = s.get(Run, run_id)
        version = s.scalar(select(func.max(Checkpoint.version))
                           .where(Checkpoint.run_id == run_id))
        state = checkpoint_state(s, run_id, version)
    engine.dispose()
    strategy = build_strategy("actor_curator", run.params, dim=DIM, seed=run.seed)
    strategy.load_state_dict(state)
    q = softmax(strategy.logits(Pool(np.arange(N), vecs.astype(np.float32))))
    return float(q[labels == 0].sum())


def feedback_for(problems: list[dict], labels: np.ndarray) -> list[dict]:
    # Cluster 0 always yields a positive realised improvement, the others none.
    return [{"problem_id": p["problem_id"],
             "utility": 2e-3 if labels[p["problem_id"]] == 0 else 0.0} for p in problems]


async def test_curator_mass_moves_to_the_rewarded_cluster(settings):
    problems, labels = cluster_bank()
    vecs = np.array([p["embedding"] for p in problems])
    async with running_app(settings) as (client, _):
        r = await client.post("/v1/banks", json={"name": "clusters", "embedder": "provided",
                                                 "dim": DIM}, headers=AUTH)
        bank_id = r.json()["bank_id"]
        r = await client.post(f"/v1/banks/{bank_id}/problems", json={"problems": problems},
                              headers=AUTH)
        assert r.json()["added"] == N
        r = await client.post("/v1/runs", json={"bank_id": bank_id, "strategy": "actor_curator",
                                                "params": {"dormant_steps": 3}, "seed": 11},
                              headers=AUTH)
        run_id, token = r.json()["run_id"], r.json()["token"]
        shares = []
        for step in range(25):
            r = await client.post(f"/v1/runs/{run_id}/select",
                                  json={"batch_size": 32, "pool_size": 128},
                                  headers=bearer(token))
            ticket = r.json()
            chosen = ticket["problems"]
            shares.append(np.mean([labels[p["problem_id"]] == 0 for p in chosen]))
            r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
                "ticket_id": ticket["ticket_id"], "results": feedback_for(chosen, labels)})
            assert r.status_code == 202
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # let the worker apply it: deterministic test
                info = (await client.get(f"/v1/runs/{run_id}", headers=bearer(token))).json()
                if info["tickets"]["applied"] == step + 1:
                    break
                await asyncio.sleep(0.01)
            assert info["tickets"]["applied"] == step + 1, "worker did not apply in 60 s"
        info = (await client.get(f"/v1/runs/{run_id}", headers=bearer(token))).json()
        assert info["model_version"] == 25
    mass = curator_mass(settings.sqlalchemy_url, run_id, labels, vecs)
    assert mass > 0.8, f"curator mass on the rewarded cluster only {mass:.2f} (uniform 0.25)"
    # the selected batches follow: warm-up near the uniform share, later mostly cluster 0
    assert np.mean(shares[:3]) < 0.5
    assert np.mean(shares[-5:]) > 0.7
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        hist = conn.execute(select(HistoryPoint).where(HistoryPoint.run_id == run_id)
                            .order_by(HistoryPoint.step)).all()
    engine.dispose()
    assert len(hist) == 25
    assert hist[0].curator_share == 0.0 and hist[-1].curator_share > 0.5
    assert all(h.loss is not None for h in hist)


def _start(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "curator.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **env})
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.mark.slow
def test_killed_server_resumes_at_saved_version(tmp_path):
    from curator.cli import migrate
    from curator.core.config import Settings
    from curator_client import Client
    from tests.conftest import ADMIN

    problems, labels = cluster_bank(seed=1)
    vecs = np.array([p["embedding"] for p in problems])
    env = {"CURATOR_DATA_DIR": str(tmp_path / "data"), "CURATOR_ADMIN_TOKEN": ADMIN,
           "CURATOR_DEVICE": "cpu", "PYTHONPATH": os.pathsep.join(sys.path)}
    settings = Settings(data_dir=tmp_path / "data")
    migrate(settings)
    port = 18000 + os.getpid() % 1000

    def rounds(run, n):
        for _ in range(n):
            batch = run.select(batch_size=32, pool_size=128)
            batch.report(feedback_for([{"problem_id": p.problem_id} for p in batch.problems],
                                      labels))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = run.info()
                if info.tickets.applied == info.tickets.reported:
                    break
                time.sleep(0.01)
        return run.info()

    proc = _start(env, port)
    try:
        with Client(f"http://127.0.0.1:{port}", token=ADMIN) as c:
            bank = c.create_bank("clusters", embedder="provided", dim=DIM)
            c.add_problems(bank.bank_id, problems)
            run = c.create_run(bank.bank_id, strategy="actor_curator",
                               params={"dormant_steps": 3}, seed=5)
            run_id, token = run.run_id, run.token
            before = rounds(run, 12)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert before.model_version == 12
    mass_before = curator_mass(settings.sqlalchemy_url, run_id, labels, vecs)

    proc = _start(env, port)
    try:
        with Client(f"http://127.0.0.1:{port}", token=token) as c:
            run = c.run(run_id, token)
            assert run.info().model_version == 12  # resumed, not relearning from scratch
            first = run.select(batch_size=32, pool_size=128)
            assert first.model_version == 12
            share = np.mean([labels[p.problem_id] == 0 for p in first.problems])
            first.report(feedback_for([{"problem_id": p.problem_id} for p in first.problems],
                                      labels))
            after = rounds(run, 8)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert after.model_version == 21 and after.step == 21
    assert share > 0.5, "the first selection after restart already uses the learned curator"
    mass_after = curator_mass(settings.sqlalchemy_url, run_id, labels, vecs)
    assert mass_before > 0.5 and mass_after >= mass_before - 0.05
