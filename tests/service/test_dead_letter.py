"""A ticket whose apply keeps failing is set aside; the run's later tickets go on."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import create_engine, select

from curator.db.models import Ticket
from curator.runs import apply
from tests.service.helpers import bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio


async def test_poison_ticket_becomes_failed_and_does_not_stall_the_run(settings, monkeypatch):
    settings.max_apply_attempts = 2
    poison: set[str] = set()
    real = apply.observations

    def failing(s, files, session_factory, bank, ticket_id, category_field):
        if ticket_id in poison:  # fault injection: this ticket's apply always raises
            raise RuntimeError("simulated corrupt feedback")
        return real(s, files, session_factory, bank, ticket_id, category_field)

    monkeypatch.setattr(apply, "observations", failing)
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=40)
        run_id, token = await make_run(client, bank_id)
        tickets = []
        for _ in range(3):
            t = (await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 4},
                                   headers=bearer(token))).json()
            tickets.append(t)
        poison.add(tickets[0]["ticket_id"])
        for t in tickets:
            r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
                "ticket_id": t["ticket_id"],
                "results": [{"problem_id": p["problem_id"], "utility": 0.1}
                            for p in t["problems"]]})
            assert r.status_code == 202
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = (await client.get(f"/v1/runs/{run_id}", headers=bearer(token))).json()
            # the run row and the ticket counts are two reads: wait for both to agree
            if (info["tickets"]["applied"] == 2 and info["tickets"]["failed"] == 1
                    and info["model_version"] == 2):
                break
            await asyncio.sleep(0.1)
        assert info["tickets"] == {"issued": 3, "reported": 3, "applied": 2, "failed": 1,
                                   "partial": 0}
        assert info["model_version"] == 2
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as c:
        row = c.execute(select(Ticket.state, Ticket.attempts, Ticket.error)
                        .where(Ticket.id == tickets[0]["ticket_id"])).one()
    engine.dispose()
    assert row.state == "failed" and row.attempts == 2
    assert "simulated corrupt feedback" in row.error
