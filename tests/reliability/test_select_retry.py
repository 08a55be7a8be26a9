"""A select a client can retry: the Idempotency-Key returns the ticket the first select
issued, under repeats, concurrency and a lost answer — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from curator.db.models import Run, Ticket
from curator_client import AsyncClient
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio


def _counts(url: str, run_id: int) -> tuple[int, int]:
    """(tickets, step) of the run, read from the database."""
    engine = create_engine(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(Ticket).where(Ticket.run_id == run_id))
        step = c.scalar(select(Run.step).where(Run.id == run_id))
    engine.dispose()
    return n, step


async def test_a_repeated_key_returns_the_same_ticket(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=60), "actor_curator")
        url = f"/v1/runs/{run_id}/select"
        body = {"batch_size": 8, "pool_size": 16}
        headers = bearer(token) | {"Idempotency-Key": "step-1"}
        first = await client.post(url, json=body, headers=headers)
        again = await client.post(url, json=body, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert "Curator-Replayed" not in first.headers
        assert again.headers["Curator-Replayed"] == "true"
        assert again.json() == first.json()  # same ticket, problems, propensities, order
        assert _counts(settings.sqlalchemy_url, run_id) == (1, 1)

        other = await client.post(url, json=body, headers=bearer(token) | {
            "Idempotency-Key": "step-2"})
        assert other.json()["ticket_id"] != first.json()["ticket_id"]
        plain = await client.post(url, json=body, headers=bearer(token))  # no key: new
        assert plain.json()["ticket_id"] not in {first.json()["ticket_id"],
                                                 other.json()["ticket_id"]}
        assert _counts(settings.sqlalchemy_url, run_id) == (3, 3)

        # the replayed ticket takes feedback as the original does
        t = again.json()
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": t["ticket_id"], "results": [
                {"problem_id": p["problem_id"], "rewards": [1.0, 0.0]}
                for p in t["problems"]]})
        assert r.status_code == 202, r.text


async def test_a_key_reused_for_another_select_is_a_conflict_and_changes_nothing(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=60))
        url = f"/v1/runs/{run_id}/select"
        headers = bearer(token) | {"Idempotency-Key": "k"}
        r = await client.post(url, json={"batch_size": 8, "pool_size": 16}, headers=headers)
        assert r.status_code == 200, r.text
        for body in ({"batch_size": 4, "pool_size": 16}, {"batch_size": 8, "pool_size": 32}):
            r = await client.post(url, json=body, headers=headers)
            assert r.status_code == 409, r.text
            err = r.json()["error"]
            assert err["type"] == "conflict" and "Idempotency-Key" in err["message"], err
        for bad in (b"x" * 65, b"has space", "é".encode()):
            r = await client.post(url, json={"batch_size": 8}, headers=bearer(token) | {
                "Idempotency-Key": bad})
            assert r.status_code == 422, (bad, r.text)
        # another run may use the same key: keys are per run
        other_id, other_token = await make_run(client, await make_bank(client, n=20, name="c"))
        r = await client.post(f"/v1/runs/{other_id}/select", json={"batch_size": 4},
                              headers=bearer(other_token) | {"Idempotency-Key": "k"})
        assert r.status_code == 200 and "Curator-Replayed" not in r.headers, r.text
        assert _counts(settings.sqlalchemy_url, run_id) == (1, 1)


async def test_concurrent_selects_with_one_key_issue_one_ticket(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=60), "pcl")
        headers = bearer(token) | {"Idempotency-Key": "same"}
        answers = await asyncio.gather(*[
            client.post(f"/v1/runs/{run_id}/select", headers=headers,
                        json={"batch_size": 8, "pool_size": 16}) for _ in range(8)])
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert len({a.json()["ticket_id"] for a in answers}) == 1
        assert sum("Curator-Replayed" not in a.headers for a in answers) == 1
        assert _counts(settings.sqlalchemy_url, run_id) == (1, 1)


class _LoseFirstAnswer(httpx.AsyncBaseTransport):
    """The network between the client and the server: the first select reaches the
    server (which issues a ticket), and its answer is lost on the way back."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/select") and self.lost == 0:
            await response.aread()
            self.lost += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


async def test_the_client_retries_a_select_whose_answer_was_lost(sqlite_settings):
    from curator.app import create_app

    async with running_app(sqlite_settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=60))
    app = create_app(sqlite_settings)
    async with app.router.lifespan_context(app):
        lossy = _LoseFirstAnswer(httpx.ASGITransport(app=app))
        async with AsyncClient("http://curator", token, transport=lossy, backoff=0.0) as c:
            ticket = await c.select(run_id, 8, 16)
            assert lossy.lost == 1
            assert _counts(sqlite_settings.sqlalchemy_url, run_id) == (1, 1)
            receipt = await c.feedback(run_id, ticket.ticket_id, [
                {"problem_id": p.problem_id, "rewards": [1.0, 0.0]} for p in ticket.problems])
            assert receipt.state == "reported"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://curator") as admin:
            info = (await admin.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
            # one ticket in all ("issued" counts every ticket), and it is the reported one
            assert info["step"] == 1 and info["tickets"]["issued"] == 1, info
            assert info["tickets"]["reported"] == 1, info
