"""Helpers for the reliability suite: an own redis-server, the exactly-once DB check,
and a small synchronous HTTP driver for process tests."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import Engine, create_engine, func, select

from curator.db.models import Checkpoint, Feedback, HistoryPoint, Run, Ticket
from tests.conftest import ADMIN
from tests.topology.procs import free_port, wait_for

AUTH = {"Authorization": f"Bearer {ADMIN}"}
KEEP_CHECKPOINTS = 5  # strategy_store.py keeps the newest five


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class RedisServer:
    """A private redis-server (nothing on disk) that a test may SIGKILL and restart empty."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=fh, stderr=subprocess.STDOUT)
        wait_for(self.ping, 20, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        r = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            return bool(r.ping())
        except redis.exceptions.ConnectionError:
            return False
        finally:
            r.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def client(self):
        import redis

        return redis.Redis(port=self.port, decode_responses=True)


def engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def ticket_states(engine: Engine, run_id: int) -> dict[str, int]:
    with engine.connect() as c:
        return dict(c.execute(select(Ticket.state, func.count()).where(Ticket.run_id == run_id)
                              .group_by(Ticket.state)).all())


def wait_all_applied(engine: Engine, run_id: int, n: int, timeout: float = 60) -> None:
    def done():
        states = ticket_states(engine, run_id)
        return states if states.get("applied", 0) == n and states.get("reported", 0) == 0 \
            else None

    wait_for(lambda: done() or False, timeout, f"{n} tickets of run {run_id} applied",
             interval=0.1)


def assert_applied_exactly_once(engine: Engine, run_id: int, n_reported: int) -> None:
    """Every reported ticket applied once: one history row each, versions 1..n unbroken,
    feedback rows counted once, the newest checkpoints contiguous at the top."""
    with engine.connect() as c:
        tickets = c.execute(select(Ticket.id, Ticket.state, Ticket.accepted)
                            .where(Ticket.run_id == run_id, Ticket.state != "issued")).all()
        history = c.execute(select(HistoryPoint.ticket_id, HistoryPoint.model_version,
                                   HistoryPoint.n_items)
                            .where(HistoryPoint.run_id == run_id)).all()
        fb = dict(c.execute(select(Feedback.ticket_id, func.count())
                            .join(Ticket, Ticket.id == Feedback.ticket_id)
                            .where(Ticket.run_id == run_id).group_by(Feedback.ticket_id)).all())
        version = c.scalar(select(Run.model_version).where(Run.id == run_id))
        ckpts = sorted(c.scalars(select(Checkpoint.version).where(Checkpoint.run_id == run_id)))
    assert len(tickets) == n_reported, f"{len(tickets)} tickets reported, want {n_reported}"
    assert all(t.state == "applied" for t in tickets), [t for t in tickets if
                                                        t.state != "applied"]
    assert len(history) == n_reported, f"{len(history)} history rows for {n_reported} tickets"
    assert {h.ticket_id for h in history} == {t.id for t in tickets}
    assert sorted(h.model_version for h in history) == list(range(1, n_reported + 1))
    assert version == n_reported
    accepted = {t.id: t.accepted for t in tickets}
    assert fb == accepted, "feedback rows per ticket differ from the accepted counts"
    assert all(h.n_items == accepted[h.ticket_id] for h in history)
    top = list(range(max(1, n_reported - KEEP_CHECKPOINTS + 1), n_reported + 1))
    assert ckpts == top, f"checkpoints {ckpts}, want {top}"


class Driver:
    """Synchronous trainer-side calls against a process URL."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def bank(self, n: int = 300, dim: int = 16, seed: int = 0) -> int:
        name = f"rel-{uuid.uuid4().hex[:8]}"
        r = self.http.post("/v1/banks", json={"name": name, "embedder": "provided",
                                              "dim": dim}, headers=AUTH)
        assert r.status_code == 201, r.text
        bank_id = r.json()["bank_id"]
        vecs = np.random.default_rng(seed).standard_normal((n, dim)).round(4)
        r = self.http.post(f"/v1/banks/{bank_id}/problems", headers=AUTH, json={"problems": [
            {"external_id": f"q{i}", "prompt": f"problem {i}", "metadata": {"g": i % 3},
             "embedding": vecs[i].tolist()} for i in range(n)]})
        assert r.status_code == 200, r.text
        return bank_id

    def run(self, bank_id: int, strategy: str = "actor_curator", params=None,
            seed: int = 3) -> tuple[int, str]:
        r = self.http.post("/v1/runs", headers=AUTH, json={
            "bank_id": bank_id, "strategy": strategy, "params": params or {}, "seed": seed})
        assert r.status_code == 201, r.text
        return r.json()["run_id"], r.json()["token"]

    def select(self, run_id: int, token: str, batch_size: int = 16,
               pool_size: int = 32) -> dict:
        r = self.http.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                           json={"batch_size": batch_size, "pool_size": pool_size})
        assert r.status_code == 200, r.text
        return r.json()

    def report(self, run_id: int, token: str, ticket: dict) -> httpx.Response:
        body = feedback_body(ticket)
        return self.http.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json=body)


def feedback_body(ticket: dict) -> dict:
    """Deterministic rewards and log-ratios per problem (group 0 is the useful one)."""
    results = []
    for p in ticket["problems"]:
        good = p["metadata"].get("g", p["problem_id"] % 3) == 0
        results.append({"problem_id": p["problem_id"],
                        "rewards": [1.0, 0.0, float(good), 0.0],
                        "log_ratios": [0.02, -0.01, 0.01 * good, 0.0]})
    return {"ticket_id": ticket["ticket_id"], "results": results}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
