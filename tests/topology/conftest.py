"""Fixtures for the production topology: a fresh PostgreSQL database, a fresh Redis stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ADMIN, REDIS_URL, redis_available


@pytest.fixture
def topology_env(pg_database, tmp_path) -> Iterator[dict[str, str]]:
    if not redis_available():
        pytest.skip(f"Redis not reachable at {REDIS_URL} (CI starts it in .ci/run)")
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_database)
    stream = f"curator:test:{uuid.uuid4().hex[:8]}"
    env = {
        "CURATOR_DATABASE_URL": pg_database,
        "CURATOR_REDIS_URL": REDIS_URL,
        "CURATOR_FEEDBACK_STREAM": stream,
        "CURATOR_WORKER_GROUP": "workers",
        "CURATOR_ADMIN_TOKEN": ADMIN,
        "CURATOR_DATA_DIR": str(tmp_path / "data"),
        "CURATOR_EMBEDDED_WORKER": "false",
        "CURATOR_DEVICE": "cpu",
        "CURATOR_LOG_LEVEL": "warning",
    }
    yield env
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    r.delete(stream)
    r.close()
    _truncate_pg(pg_database)
