"""Two workers on one SQLite database (no row locks there) take the same ticket at once:
one applies it, the other finds its guarded writes overtaken and steps back — the
ticket is applied once, nothing counts toward dead-lettering, no error is recorded."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import select

from curator.db.models import Checkpoint, Ticket
from curator.db.session import make_engine, make_session_factory
from curator.worker.updater import Updater
from tests.service.helpers import (
    AUTH,
    make_bank,
    make_run,
    rollouts,
    running_app,
    select_and_report,
)

pytestmark = pytest.mark.anyio


def _apply(worker: Updater, ticket_id: str, start: threading.Barrier, out: list,
           k: int) -> None:
    start.wait()  # both read the ticket as reported before either commits
    out[k] = worker.apply(ticket_id)


async def test_two_sqlite_workers_apply_one_ticket_once(sqlite_settings):
    sqlite_settings.embedded_worker = False  # the two workers below are the only ones
    async with running_app(sqlite_settings) as (client, app):
        state = app.state.curator
        bank_id = await make_bank(client, 120)
        run_id, token = await make_run(client, bank_id, "actor_curator", {"dormant_steps": 0})
        rng = np.random.default_rng(0)
        outcomes = []
        for step in range(3):
            body = await select_and_report(client, run_id, token, batch_size=32, pool_size=64,
                                           result=rollouts([1, 0, 1, 1], rng))
            # two "processes": each its own engine (connection pool) and training cache
            url = sqlite_settings.sqlalchemy_url
            workers = [Updater(make_session_factory(make_engine(url)), state.files, "cpu")
                       for _ in range(2)]
            results_: list = [None, None]
            start = threading.Barrier(2)
            threads = [threading.Thread(target=_apply, args=(
                workers[k], body["ticket_id"], start, results_, k)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            applied = [a for a in results_ if not a.skipped]
            assert len(applied) == 1, results_
            assert applied[0].model_version == step + 1
            outcomes.append(results_)
        with state.session_factory() as s:
            tickets = s.execute(select(Ticket.state, Ticket.attempts, Ticket.error)
                                .where(Ticket.run_id == run_id)).all()
            versions = s.scalars(select(Checkpoint.version)
                                 .where(Checkpoint.run_id == run_id)).all()
        assert [tuple(t) for t in tickets] == [("applied", 0, None)] * 3
        assert sorted(versions) == [1, 2, 3]
        info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
        assert info["model_version"] == 3
