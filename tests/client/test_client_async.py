"""AsyncClient: the same contract as Client, through httpx.AsyncClient."""

from __future__ import annotations

import json

import httpx
import pytest

from curator_client import (
    AddProblemsResult,
    AsyncBatch,
    AsyncClient,
    AsyncRun,
    Bank,
    Forbidden,
    Result,
    TransportError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def make_client(server, api):
    made: list[AsyncClient] = []

    def make(**kwargs) -> AsyncClient:
        kwargs.setdefault("token", api.ADMIN)
        kwargs.setdefault("backoff", 0.0)
        client = AsyncClient(api.BASE_URL, transport=httpx.MockTransport(server), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def _auth(request: httpx.Request) -> str | None:
    return request.headers.get("Authorization")


async def test_create_and_get_bank(server, api, make_client) -> None:
    server.on("POST", "/v1/banks", httpx.Response(201, json=api.bank(4)))
    server.on("GET", "/v1/banks", httpx.Response(200, json={"banks": [api.bank(4)]}))
    server.on("GET", "/v1/banks/4", httpx.Response(200, json=api.bank(4, index={"n": 0})))
    c = make_client()
    assert await c.create_bank("arith") == Bank(4, "arith", "hash", 64, 0)
    assert [b.bank_id for b in await c.list_banks()] == [4]
    assert (await c.get_bank(4)).index == {"n": 0}
    assert server.bodies("POST", "/v1/banks") == [{"name": "arith", "embedder": "hash"}]
    assert [_auth(r) for r in server.requests] == ["Bearer admin-token"] * 3


async def test_health_and_readiness(server, make_client) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    server.on("GET", "/readyz", httpx.Response(503, json={"status": "starting", "checks": {}}))
    c = make_client()
    assert (await c.healthz()).ok
    ready = await c.readyz()
    assert not ready.ok and ready.status == "starting"


async def test_add_problems_chunks_and_aggregates(server, make_client) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        ext = [p["external_id"] for p in json.loads(request.content)["problems"]]
        ids = [int(e[1:]) for e in ext if e != "p2"]
        dups = [e for e in ext if e == "p2"]
        size = 100 + len(server.requests)
        body = {"added": len(ids), "duplicates": dups, "problem_ids": ids, "size": size}
        return httpx.Response(200, json=body)

    server.on("POST", "/v1/banks/2/problems", answer)
    progress: list[tuple[int, int | None]] = []
    problems = ({"external_id": f"p{i}", "prompt": "q", "answer": None} for i in range(5))
    result = await make_client().add_problems(
        2, problems, chunk_size=2, progress=lambda d, t: progress.append((d, t))
    )
    assert [len(b["problems"]) for b in server.bodies("POST", "/v1/banks/2/problems")] == [2, 2, 1]
    assert result == AddProblemsResult(4, ("p2",), (0, 1, 3, 4), 103)
    assert progress == [(2, None), (4, None), (5, None)]


async def test_add_problems_empty_fetches_size(server, api, make_client) -> None:
    server.on("GET", "/v1/banks/2", httpx.Response(200, json=api.bank(2, size=9)))
    assert (await make_client().add_problems(2, [])).size == 9


async def test_async_batches_loop_with_report(server, api, make_client) -> None:
    tickets = iter(range(100))

    def select(request: httpx.Request) -> httpx.Response:
        step = next(tickets)
        return httpx.Response(200, json=api.ticket(f"t-{step}", step=step, n=3))

    def feedback(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(202, json=api.receipt(body["ticket_id"], len(body["results"])))

    server.on("POST", "/v1/runs", httpx.Response(201, json=api.created_run(7, "rt-7")))
    server.on("POST", "/v1/runs/7/select", select)
    server.on("POST", "/v1/runs/7/feedback", feedback)

    run = await make_client().create_run(1, strategy="actor_curator", seed=1)
    assert isinstance(run, AsyncRun) and run.token == "rt-7"
    steps = []
    async for batch in run.batches(batch_size=3, steps=2):
        assert isinstance(batch, AsyncBatch)
        receipt = await batch.report([Result(p.problem_id, utility=0.5) for p in batch])
        assert receipt.accepted == 3 and batch.reported
        steps.append(batch.step)

    assert steps == [0, 1]
    assert server.bodies("POST", "/v1/runs") == [
        {"bank_id": 1, "strategy": "actor_curator", "params": {}, "seed": 1}
    ]
    assert server.bodies("POST", "/v1/runs/7/select") == [{"batch_size": 3}] * 2
    fb = server.bodies("POST", "/v1/runs/7/feedback")
    assert [f["ticket_id"] for f in fb] == ["t-0", "t-1"]
    assert fb[1]["results"] == [{"problem_id": 10 + i, "utility": 0.5} for i in range(3)]
    assert [_auth(r) for r in server.requests[1:]] == ["Bearer rt-7"] * 4


async def test_async_run_handle_info_and_errors(server, api, make_client) -> None:
    server.on("GET", "/v1/runs/5", httpx.Response(200, json=api.created_run(5) | {"step": 9}))
    server.on("POST", "/v1/runs/5/select", api.error(403, "forbidden", "wrong run"))
    run = make_client().run(5, "rt-5")
    assert (await run.info()).step == 9
    with pytest.raises(Forbidden) as info:
        await run.select(4)
    assert info.value.message == "wrong run"


async def test_async_feedback_retried_then_succeeds(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/7/feedback",
        httpx.ConnectError("refused"),
        api.error(503, "unavailable"),
        httpx.Response(202, json=api.receipt(state="applied")),
    )
    c = make_client(backoff=0.25)
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    c._sleep = fake_sleep  # type: ignore[method-assign]
    receipt = await c.run(7, "rt").feedback("t-1", [{"problem_id": 1, "utility": 1.0}])
    assert receipt.state == "applied"
    assert len(server.requests) == 3
    assert sleeps == [0.25, 0.5]


async def test_async_feedback_exhausted(server, make_client) -> None:
    server.on("POST", "/v1/runs/7/feedback", httpx.ConnectError("refused"))
    with pytest.raises(TransportError) as info:
        await make_client(retries=2).feedback(7, "t", [])
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(server.requests) == 3


async def test_async_real_sleep_backoff_is_used(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/7/feedback",
        api.error(503, "unavailable"),
        httpx.Response(202, json=api.receipt()),
    )
    assert (await make_client(backoff=0.01).feedback(7, "t-1", [])).ticket_id == "t-1"


async def test_async_select_retried_with_one_idempotency_key(server, api,
                                                              make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/8/select",
        httpx.ConnectError("refused"),
        api.error(503, "unavailable"),
        httpx.Response(200, json=api.ticket()),
    )
    c = make_client(retries=4, backoff=0.0)
    assert (await c.select(8, 2)).ticket_id == api.ticket()["ticket_id"]
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(server.requests) == 3 and len(keys) == 1


async def test_async_context_manager(server, api) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    async with AsyncClient(api.BASE_URL, transport=httpx.MockTransport(server)) as c:
        assert (await c.healthz()).status == "ok"
    assert c._http.is_closed


async def test_async_injected_client_left_open(server, api) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        async with AsyncClient(api.BASE_URL, http_client=http) as c:
            await c.healthz()
        assert not http.is_closed
