"""Two API replicas and two workers over real PostgreSQL and Redis, as real processes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from curator.db.models import Checkpoint, HistoryPoint, Run, Ticket
from curator_client import Client
from tests.conftest import ADMIN
from tests.topology.procs import start_api, start_worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_two_apis_two_workers_apply_every_ticket_once(topology_env, tmp_path):
    procs = []
    try:
        api_a, url_a = start_api(topology_env, tmp_path / "api-a.log")
        api_b, url_b = start_api(topology_env, tmp_path / "api-b.log")
        procs += [api_a, api_b]
        procs += [start_worker(topology_env, tmp_path / f"worker-{i}.log") for i in range(2)]

        rng = np.random.default_rng(0)
        with Client(url_a, token=ADMIN) as admin:
            bank = admin.create_bank("topo", embedder="provided", dim=8)
            vecs = rng.standard_normal((600, 8))
            admin.add_problems(bank.bank_id, [
                {"external_id": f"t{i}", "prompt": f"problem {i}", "metadata": {"g": i % 3},
                 "embedding": vecs[i].tolist()} for i in range(600)])
            created = [admin.create_run(bank.bank_id, strategy="actor_curator",
                                        params={"dormant_steps": 2}, seed=s) for s in (1, 2)]

        clients = {url: Client(url) for url in (url_a, url_b)}
        runs = {url: [clients[url].run(r.run_id, r.token) for r in created] for url in clients}
        versions_seen = {url: set() for url in clients}
        pools: dict[int, list[int]] = {r.run_id: [] for r in created}
        steps = 12
        # alternate replicas: the trainer's requests land on both APIs
        for step, url in zip(range(steps * 2), itertools.cycle([url_a, url_b])):
            run = runs[url][step % 2]
            batch = run.select(batch_size=16, pool_size=32)
            versions_seen[url].add(batch.model_version)
            pools[run.run_id] += [p.problem_id for p in batch.problems]
            batch.report([{"problem_id": p.problem_id,
                           "rewards": [float(p.metadata["g"] == 0), 0.0, 1.0, 0.0],
                           "log_ratios": [0.01, -0.01, 0.0, 0.02]} for p in batch.problems])

        engine = create_engine(topology_env["CURATOR_DATABASE_URL"])

        def all_applied():
            with engine.connect() as c:
                states = dict(c.execute(select(Ticket.state, func.count())
                                        .group_by(Ticket.state)).all())
            return states if states.get("applied") == 2 * steps and len(states) == 1 else None

        wait_for(all_applied, 120, "every ticket applied")
        with engine.connect() as c:
            history = c.execute(select(HistoryPoint.run_id, HistoryPoint.ticket_id,
                                       HistoryPoint.model_version, HistoryPoint.step)).all()
            run_versions = dict(c.execute(select(Run.id, Run.model_version)).all())
            ckpt_versions = c.execute(select(Checkpoint.run_id, func.max(Checkpoint.version))
                                      .group_by(Checkpoint.run_id)).all()
        engine.dispose()
        # every ticket applied exactly once, in one unbroken version sequence per run
        assert len(history) == 2 * steps == len({h.ticket_id for h in history})
        for r in created:
            versions = sorted(h.model_version for h in history if h.run_id == r.run_id)
            assert versions == list(range(1, steps + 1))
            # applied in the order they were reported, although two workers competed
            in_version_order = [h.step for h in sorted(history, key=lambda h: h.model_version)
                                if h.run_id == r.run_id]
            assert in_version_order == sorted(in_version_order)
            assert run_versions[r.run_id] == steps
            # disjoint candidate pools within the epoch (12 x 16 = 192 of 600)
            assert len(pools[r.run_id]) == len(set(pools[r.run_id]))
        assert dict(ckpt_versions) == {r.run_id: steps for r in created}

        # both replicas now serve the newest version
        for url in (url_a, url_b):
            for run in runs[url]:
                info = run.info()
                assert info.model_version == steps
                batch = run.select(batch_size=4, pool_size=8)
                assert batch.model_version == steps
                versions_seen[url].add(batch.model_version)
        for url, seen in versions_seen.items():
            assert max(seen) == steps and len(seen) > 2, f"{url} saw versions {sorted(seen)}"
        for c in clients.values():
            c.close()
    finally:
        for p in procs:
            p.stop()


def _select_pools(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("curator_select_pools{")}


def test_a_separate_worker_announces_the_next_pool_scored(topology_env, tmp_path):
    """In a training loop (each select after the previous update is applied) with the
    worker in its own process, the API takes each version's next pool scored by the
    worker from the announcement: the selects score nothing and load no checkpoint."""
    procs = []
    try:
        api, url = start_api(topology_env, tmp_path / "api.log")
        procs += [api, start_worker(topology_env, tmp_path / "worker.log")]
        rng = np.random.default_rng(1)
        with Client(url, token=ADMIN) as admin:
            bank = admin.create_bank("prescored", embedder="provided", dim=8)
            vecs = rng.standard_normal((400, 8))
            admin.add_problems(bank.bank_id, [
                {"external_id": f"s{i}", "prompt": f"problem {i}", "embedding": vecs[i].tolist()}
                for i in range(400)])
            created = admin.create_run(bank.bank_id, strategy="actor_curator",
                                       params={"dormant_steps": 1}, seed=3)
        before = _select_pools(url)
        steps = 8
        with Client(url) as client:
            run = client.run(created.run_id, created.token)
            for step in range(steps):
                batch = run.select(batch_size=16, pool_size=48)
                assert batch.model_version == step
                batch.report([{"problem_id": p.problem_id, "rewards": [1.0, 0.0, 0.0, 1.0],
                               "log_ratios": [0.01, -0.01, 0.0, 0.02]} for p in batch.problems])
                wait_for(lambda s=step: run.info().model_version == s + 1, 60,
                         f"version {step + 1} applied")
        after = _select_pools(url)
        ahead = after["ahead"] - before.get("ahead", 0.0)
        inline = after["inline"] - before.get("inline", 0.0)
        # the first select has no previous update; at most one announcement may be late
        assert ahead >= steps - 2 and ahead + inline == steps, (ahead, inline)
    finally:
        for p in procs:
            p.stop()
