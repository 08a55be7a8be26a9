"""A real Curator API (uvicorn subprocess, SQLite, embedded worker) for the integrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN


@pytest.fixture(scope="session")
def curator_url(tmp_path_factory) -> Iterator[str]:
    from curator.cli import migrate
    from curator.core.config import Settings
    from tests.topology.procs import start_api

    root: Path = tmp_path_factory.mktemp("curator-integrations")
    db = f"sqlite:///{root / 'curator.db'}"
    migrate(Settings(database_url=db, data_dir=root / "data"))
    env = {
        "CURATOR_DATABASE_URL": db,
        "CURATOR_DATA_DIR": str(root / "data"),
        "CURATOR_ADMIN_TOKEN": ADMIN,
        "CURATOR_DEVICE": "cpu",
        "CURATOR_REDIS_URL": "",  # in-process queue and embedded worker
        "CURATOR_EMBEDDED_WORKER": "true",
        "CURATOR_LOG_LEVEL": "warning",
    }
    proc, url = start_api(env, root / "api.log")
    yield url
    proc.stop()


@pytest.fixture
def admin(curator_url):
    from curator_client import Client

    with Client(curator_url, token=ADMIN) as client:
        yield client

