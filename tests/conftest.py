"""Shared fixtures: real SQLite always, real PostgreSQL and Redis when reachable."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "service", ROOT / "client", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

PG_HOST = os.environ.get("CURATOR_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CURATOR_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CURATOR_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("CURATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "test-admin-token"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _reachable(PG_HOST, PG_PORT)


def redis_available() -> bool:
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    return _reachable(url.hostname or "127.0.0.1", url.port or 6379)


def pytest_terminal_summary(terminalreporter) -> None:
    """Say so, on a line of its own, when the dashboard's browser test did not run."""
    for report in terminalreporter.stats.get("skipped", []):
        if "test_admin_browser.py" in report.nodeid and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            terminalreporter.write_line(f"browser test not run: {reason}", yellow=True,
                                        bold=True)
            return


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.contextmanager
def scratch_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards; the
    caller has checked `postgres_available()`."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if not postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} (CI starts it in .ci/run)")
    from curator.db.migrate import upgrade

    with scratch_pg_database("curator_test") as url:
        upgrade(url)
        yield url


def _truncate_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE banks, problems, runs, tickets, ticket_items, feedback, "
                          "checkpoints, history RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """The same tests on real SQLite and on real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'curator.db'}"
        from curator.cli import migrate
        from curator.core.config import Settings

        migrate(Settings(database_url=url, data_dir=tmp_path))
        yield url
    else:
        url = request.getfixturevalue("pg_database")
        _truncate_pg(url)
        yield url
        _truncate_pg(url)


@pytest.fixture
def settings(database_url, tmp_path):
    from curator.core.config import Settings

    return Settings(database_url=database_url, data_dir=tmp_path / "data", admin_token=ADMIN,
                    device="cpu")


@pytest.fixture
def sqlite_settings(tmp_path):
    """SQLite only, for tests that need no second backend."""
    from curator.cli import migrate
    from curator.core.config import Settings

    url = f"sqlite:///{tmp_path / 'curator.db'}"
    s = Settings(database_url=url, data_dir=tmp_path / "data", admin_token=ADMIN, device="cpu")
    migrate(s)
    return s
