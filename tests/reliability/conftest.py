"""Fixtures for the reliability suite.

`deployment` is the production topology as real processes (uvicorn API + `curator worker`
on PostgreSQL, over a private redis-server that tests may SIGKILL and restart), shared by
a module because each process start pays the torch import; every test gets it healthy
again (`ensure()`) and works on its own run.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import ADMIN, _truncate_pg
from tests.reliability.support import Driver, RedisServer, engine_for
from tests.topology.procs import Proc, start_api, start_worker


@dataclass
class Deployment:
    env: dict[str, str]
    logs: Path
    redis: RedisServer
    engine: Engine
    api: Proc | None = None
    url: str = ""
    worker: Proc | None = None
    _n: itertools.count = field(default_factory=itertools.count)

    def _log(self, what: str) -> Path:
        return self.logs / f"{what}-{next(self._n)}.log"

    def start_api(self) -> str:
        self.api, self.url = start_api(self.env, self._log("api"))
        return self.url

    def start_worker(self) -> Proc:
        self.worker = start_worker(self.env, self._log("worker"))
        return self.worker

    def ensure(self) -> None:
        """Redis, one API and one worker up (started concurrently where missing)."""
        if not self.redis.ping():
            self.redis.kill()
            self.redis.start()
        todo = []
        if self.api is None or self.api.p.poll() is not None:
            todo.append(self.start_api)
        if self.worker is None or self.worker.p.poll() is not None:
            todo.append(self.start_worker)
        if todo:
            with ThreadPoolExecutor(len(todo)) as pool:
                for f in [pool.submit(fn) for fn in todo]:
                    f.result()

    def driver(self) -> Driver:
        return Driver(self.url)

    def stop(self) -> None:
        for p in (self.api, self.worker):
            if p is not None:
                p.stop()


@pytest.fixture(scope="module")
def _deployment(pg_database, tmp_path_factory) -> Iterator[Deployment]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    tmp = tmp_path_factory.mktemp("deployment")
    _truncate_pg(pg_database)
    redis = RedisServer(tmp / "redis.log")
    redis.start()
    env = {
        "CURATOR_DATABASE_URL": pg_database,
        "CURATOR_REDIS_URL": redis.url,
        "CURATOR_FEEDBACK_STREAM": f"curator:rel:{uuid.uuid4().hex[:8]}",
        "CURATOR_WORKER_GROUP": "workers",
        "CURATOR_ADMIN_TOKEN": ADMIN,
        "CURATOR_DATA_DIR": str(tmp / "data"),
        "CURATOR_EMBEDDED_WORKER": "false",
        "CURATOR_DEVICE": "cpu",
        "CURATOR_LOG_LEVEL": "warning",
        "CURATOR_WORKER_STALE_S": "3",  # a SIGKILLed worker shows as dead within seconds
    }
    dep = Deployment(env=env, logs=tmp, redis=redis, engine=engine_for(pg_database))
    try:
        yield dep
    finally:
        dep.stop()
        redis.kill()
        dep.engine.dispose()
        _truncate_pg(pg_database)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, to SIGKILL and restart at will."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def deployment(_deployment) -> Deployment:
    _deployment.ensure()
    return _deployment
