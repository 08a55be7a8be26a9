"""Client (sync): request building, parsing, chunking, run handles, retries."""

from __future__ import annotations

import json

import httpx
import pytest

from curator_client import (
    AddProblemsResult,
    Bank,
    Batch,
    Client,
    Conflict,
    CuratorError,
    FeedbackReceipt,
    NotFound,
    PayloadTooLarge,
    Result,
    Run,
    ServerError,
    Ticket,
    TransportError,
    Unauthorized,
)


@pytest.fixture
def make_client(server, api):
    made: list[Client] = []

    def make(**kwargs) -> Client:
        kwargs.setdefault("token", api.ADMIN)
        kwargs.setdefault("backoff", 0.0)
        client = Client(api.BASE_URL, transport=httpx.MockTransport(server), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _auth(request: httpx.Request) -> str | None:
    return request.headers.get("Authorization")


# -- request building ------------------------------------------------------------------


def test_create_bank_request_and_answer(server, api, make_client) -> None:
    server.on("POST", "/v1/banks", httpx.Response(201, json=api.bank(4, extra_key=1)))
    bank = make_client().create_bank("arith", embedder="hash")
    assert bank == Bank(4, "arith", "hash", 64, 0)
    (request,) = server.requests
    assert str(request.url) == "http://curator.test/v1/banks"
    assert _auth(request) == "Bearer admin-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("curator-client/")
    # dim=None is dropped, not sent as null
    assert json.loads(request.content) == {"name": "arith", "embedder": "hash"}


def test_create_bank_with_dim(server, api, make_client) -> None:
    server.on("POST", "/v1/banks", httpx.Response(201, json=api.bank(dim=8)))
    assert make_client().create_bank("e", embedder="provided", dim=8).dim == 8
    assert server.bodies("POST", "/v1/banks") == [{"name": "e", "embedder": "provided", "dim": 8}]


def test_base_url_prefix_and_trailing_slash(server, api) -> None:
    server.on("GET", "/curator/v1/banks", httpx.Response(200, json={"banks": []}))
    with Client("http://h/curator/", transport=httpx.MockTransport(server)) as c:
        assert c.list_banks() == []
    assert str(server.requests[0].url) == "http://h/curator/v1/banks"


def test_no_token_means_no_auth_header(server, api) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    with Client(api.BASE_URL, transport=httpx.MockTransport(server)) as c:
        health = c.healthz()
    assert health.ok and health.status == "ok"
    assert "Authorization" not in server.requests[0].headers


def test_extra_headers_are_sent(server, make_client) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    make_client(headers={"X-Trace": "abc"}).healthz()
    assert server.requests[0].headers["X-Trace"] == "abc"


def test_list_and_get_banks(server, api, make_client) -> None:
    server.on("GET", "/v1/banks", httpx.Response(200, json={"banks": [api.bank(1), api.bank(2)]}))
    server.on("GET", "/v1/banks/2", httpx.Response(200, json=api.bank(2, index={"ntotal": 5})))
    c = make_client()
    assert [b.bank_id for b in c.list_banks()] == [1, 2]
    bank = c.get_bank(2)
    assert bank.index == {"ntotal": 5}
    assert [r.content for r in server.requests] == [b"", b""]


def test_create_run_returns_handle_bound_to_run_token(server, api, make_client) -> None:
    server.on("POST", "/v1/runs", httpx.Response(201, json=api.created_run(7, "rt-7")))
    run = make_client().create_run(1, strategy="actor_curator", params={"lr": 0.1}, seed=0)
    assert isinstance(run, Run)
    assert (run.run_id, run.token) == (7, "rt-7")
    assert run.created is not None and run.created.params == {"lr": 0.1}
    assert "rt-7" not in repr(run)
    assert server.bodies("POST", "/v1/runs") == [
        {"bank_id": 1, "strategy": "actor_curator", "params": {"lr": 0.1}, "seed": 0}
    ]
    assert _auth(server.requests[0]) == "Bearer admin-token"


def test_create_run_defaults(server, api, make_client) -> None:
    server.on("POST", "/v1/runs", httpx.Response(201, json=api.created_run()))
    make_client().create_run(3, name="baseline")
    assert server.bodies("POST", "/v1/runs") == [
        {"bank_id": 3, "strategy": "uniform", "params": {}, "name": "baseline"}
    ]


def test_select_and_feedback_with_explicit_token(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/7/select", httpx.Response(200, json=api.ticket("t-1")))
    server.on("POST", "/v1/runs/7/feedback", httpx.Response(202, json=api.receipt("t-1")))
    c = make_client()
    ticket = c.select(7, 2, token="rt")
    assert isinstance(ticket, Ticket) and ticket.ticket_id == "t-1"
    receipt = c.feedback(
        7,
        "t-1",
        [Result(0, utility=1.0), {"problem_id": 1, "rewards": [1.0, 0.0], "log_ratios": None}],
        token="rt",
    )
    assert receipt == FeedbackReceipt("t-1", 2, "reported")
    assert [_auth(r) for r in server.requests] == ["Bearer rt", "Bearer rt"]
    assert server.bodies("POST", "/v1/runs/7/select") == [{"batch_size": 2}]
    assert server.bodies("POST", "/v1/runs/7/feedback") == [
        {
            "ticket_id": "t-1",
            "results": [
                {"problem_id": 0, "utility": 1.0},
                {"problem_id": 1, "rewards": [1.0, 0.0]},
            ],
        }
    ]


def test_select_sends_pool_size(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/7/select", httpx.Response(200, json=api.ticket()))
    make_client().select(7, 16, pool_size=512)
    assert server.bodies("POST", "/v1/runs/7/select") == [{"batch_size": 16, "pool_size": 512}]
    assert _auth(server.requests[0]) == "Bearer admin-token"


def test_get_run(server, make_client) -> None:
    body = {
        "run_id": 7,
        "bank_id": 1,
        "name": None,
        "strategy": "uniform",
        "params": {},
        "seed": 3,
        "step": 4,
        "model_version": 2,
        "tickets": {"issued": 4, "reported": 3, "applied": 2},
        "stats": {},
    }
    server.on("GET", "/v1/runs/7", httpx.Response(200, json=body))
    info = make_client().get_run(7)
    assert (info.run_id, info.seed, info.step, info.tickets.applied) == (7, 3, 4, 2)


# -- errors ------------------------------------------------------------------------------


def test_error_answers_raise_mapped_exceptions(server, api, make_client) -> None:
    server.on("GET", "/v1/banks/9", api.error(404, "not_found", "no bank 9", {"bank_id": 9}))
    server.on("POST", "/v1/banks", api.error(401, "unauthorized", "bad token"))
    c = make_client()
    with pytest.raises(NotFound) as info:
        c.get_bank(9)
    assert info.value.details == {"bank_id": 9}
    assert info.value.message == "no bank 9"
    with pytest.raises(Unauthorized):
        c.create_bank("x")


def test_unexpected_2xx_body_raises_curator_error(server, make_client) -> None:
    server.on("GET", "/v1/banks/1", httpx.Response(200, text="<html>hi</html>"))
    server.on("GET", "/v1/banks/2", httpx.Response(200, json={"bank_id": 2}))
    c = make_client()
    with pytest.raises(CuratorError, match="not JSON"):
        c.get_bank(1)
    with pytest.raises(CuratorError, match="unexpected answer") as info:
        c.get_bank(2)
    assert isinstance(info.value.__cause__, KeyError)


def test_readyz_503_is_an_answer_not_an_error(server, make_client) -> None:
    body = {"status": "unavailable", "checks": {"db": "ok", "worker": "down"}}
    server.on("GET", "/readyz", httpx.Response(503, json=body))
    health = make_client(retries=5).readyz()
    assert not health.ok
    assert health.http_status == 503
    assert health.checks == {"db": "ok", "worker": "down"}
    assert len(server.requests) == 1  # not retried


def test_readyz_503_from_a_proxy_raises(server, make_client) -> None:
    server.on("GET", "/readyz", httpx.Response(503, text="<html>down</html>"))
    with pytest.raises(ServerError) as info:
        make_client().readyz()
    assert info.value.message == "<html>down</html>"


# -- add_problems -------------------------------------------------------------------------


def _add_answer(request: httpx.Request) -> httpx.Response:
    """Fake server for add: ids = 1000 + number in external id; 'dup*' are duplicates."""
    problems = json.loads(request.content)["problems"]
    added = [p for p in problems if not p["external_id"].startswith("dup")]
    dups = [p["external_id"] for p in problems if p["external_id"].startswith("dup")]
    ids = [1000 + int(p["external_id"][1:]) for p in added]
    size = max(ids, default=0) - 999
    return httpx.Response(
        200, json={"added": len(added), "duplicates": dups, "problem_ids": ids, "size": size}
    )


def test_add_problems_chunks_and_aggregates(server, make_client) -> None:
    server.on("POST", "/v1/banks/1/problems", _add_answer)
    problems = [{"external_id": f"p{i}", "prompt": f"q{i}", "answer": None} for i in range(25)]
    problems[3] = {"external_id": "dup-a", "prompt": "x"}
    problems[21] = {"external_id": "dup-b", "prompt": "y", "metadata": {"k": 1}}
    progress: list[tuple[int, int | None]] = []

    result = make_client().add_problems(
        1, problems, chunk_size=10, progress=lambda done, total: progress.append((done, total))
    )

    sent = server.bodies("POST", "/v1/banks/1/problems")
    assert [len(b["problems"]) for b in sent] == [10, 10, 5]
    assert [p["external_id"] for b in sent for p in b["problems"]] == [
        p["external_id"] for p in problems
    ]
    assert "answer" not in sent[0]["problems"][0]  # None dropped
    assert sent[2]["problems"][1] == {"external_id": "dup-b", "prompt": "y", "metadata": {"k": 1}}
    expected_ids = tuple(1000 + i for i in range(25) if i not in (3, 21))
    assert result == AddProblemsResult(
        added=23, duplicates=("dup-a", "dup-b"), problem_ids=expected_ids, size=25
    )
    assert progress == [(10, 25), (20, 25), (25, 25)]


def test_add_problems_consumes_a_generator_lazily(server, make_client) -> None:
    consumed: list[int] = []
    posted_when: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posted_when.append(len(consumed))
        return _add_answer(request)

    def gen():
        for i in range(7):
            consumed.append(i)
            yield {"external_id": f"p{i}", "prompt": "q"}

    server.on("POST", "/v1/banks/1/problems", answer)
    progress: list[tuple[int, int | None]] = []
    result = make_client().add_problems(
        1, gen(), chunk_size=3, progress=lambda d, t: progress.append((d, t))
    )
    # each request went out after only its own chunk had been pulled from the generator
    assert posted_when == [3, 6, 7]
    assert result.added == 7 and result.size == 7
    assert progress == [(3, None), (6, None), (7, None)]


def test_add_problems_empty_fetches_size(server, api, make_client) -> None:
    server.on("GET", "/v1/banks/1", httpx.Response(200, json=api.bank(1, size=42)))
    result = make_client().add_problems(1, [])
    assert result == AddProblemsResult(0, (), (), 42)
    assert server.calls("POST") == []


def test_add_problems_rejects_bad_chunk_size(server, make_client) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        make_client().add_problems(1, [{"external_id": "a", "prompt": "b"}], chunk_size=0)
    assert server.requests == []


def test_add_problems_error_mid_way_propagates(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/banks/1/problems",
        _add_answer,
        api.error(413, "payload_too_large", "too big"),
    )
    problems = [{"external_id": f"p{i}", "prompt": "q"} for i in range(4)]
    with pytest.raises(PayloadTooLarge):
        make_client().add_problems(1, problems, chunk_size=2)
    assert len(server.requests) == 2  # not retried


# -- run handles and batches ---------------------------------------------------------------


def test_batches_loop_with_report(server, api, make_client) -> None:
    issued: list[str] = []

    def select(request: httpx.Request) -> httpx.Response:
        step = len(issued)
        issued.append(f"t-{step}")
        assert json.loads(request.content) == {"batch_size": 2, "pool_size": 8}
        return httpx.Response(200, json=api.ticket(f"t-{step}", step=step))

    def feedback(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(202, json=api.receipt(body["ticket_id"], len(body["results"])))

    server.on("POST", "/v1/runs", httpx.Response(201, json=api.created_run(7, "rt-7")))
    server.on("POST", "/v1/runs/7/select", select)
    server.on("POST", "/v1/runs/7/feedback", feedback)

    run = make_client().create_run(1, strategy="actor_curator")
    seen = []
    for batch in run.batches(batch_size=2, pool_size=8, steps=3):
        assert isinstance(batch, Batch)
        assert not batch.reported
        seen.append((batch.ticket_id, batch.step, [p.problem_id for p in batch]))
        receipt = batch.report([Result(p.problem_id, rewards=[1.0, 0.0]) for p in batch.problems])
        assert batch.reported and batch.receipt is receipt
        assert receipt.accepted == len(batch) == 2

    assert seen == [("t-0", 0, [0, 1]), ("t-1", 1, [10, 11]), ("t-2", 2, [20, 21])]
    feedbacks = server.bodies("POST", "/v1/runs/7/feedback")
    assert [f["ticket_id"] for f in feedbacks] == ["t-0", "t-1", "t-2"]
    assert feedbacks[1]["results"][0] == {"problem_id": 10, "rewards": [1.0, 0.0]}
    # admin token to create, run token afterwards
    assert [_auth(r) for r in server.requests] == ["Bearer admin-token"] + ["Bearer rt-7"] * 6


def test_batches_allow_skipping_reports_and_run_forever(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/5/select", httpx.Response(200, json=api.ticket(run_id=5)))
    run = make_client().run(5, "rt-5")
    batches = []
    for batch in run.batches(batch_size=2):  # steps=None: until the caller stops
        batches.append(batch)
        if len(batches) == 4:
            break
    assert len(server.requests) == 4
    assert not any(b.reported for b in batches)
    assert server.calls("POST", "/v1/runs/5/feedback") == []


def test_batches_zero_steps_and_negative(server, make_client) -> None:
    run = make_client().run(5, "rt")
    assert list(run.batches(4, steps=0)) == []
    with pytest.raises(ValueError):
        list(run.batches(4, steps=-1))
    assert server.requests == []


def test_run_handle_without_token_uses_client_token(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/5/select", httpx.Response(200, json=api.ticket(run_id=5)))
    server.on("GET", "/v1/runs/5", httpx.Response(200, json=api.created_run(5) | {"step": 1}))
    run = make_client().run(5)
    run.select(2)
    info = run.info()
    assert info.step == 1
    assert [_auth(r) for r in server.requests] == ["Bearer admin-token"] * 2


def test_run_info_uses_run_token(server, api, make_client) -> None:
    server.on("GET", "/v1/runs/5", httpx.Response(200, json=api.created_run(5)))
    make_client().run(5, "rt-5").info()
    assert _auth(server.requests[0]) == "Bearer rt-5"


# -- retries -----------------------------------------------------------------------------------


def _record_sleeps(client: Client) -> list[float]:
    sleeps: list[float] = []
    client._sleep = sleeps.append  # type: ignore[method-assign]
    return sleeps


def test_feedback_retried_on_503_then_succeeds(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/7/feedback",
        api.error(503, "unavailable", "busy"),
        api.error(503, "unavailable", "busy"),
        httpx.Response(202, json=api.receipt("t-1", 1, "applied")),
    )
    c = make_client(backoff=0.5)
    sleeps = _record_sleeps(c)
    receipt = c.feedback(7, "t-1", [{"problem_id": 3, "utility": 0.25}])
    assert receipt.state == "applied"
    calls = server.calls("POST", "/v1/runs/7/feedback")
    assert len(calls) == 3
    assert len({r.content for r in calls}) == 1  # the same body each time
    assert sleeps == [0.5, 1.0]


def test_feedback_retried_on_transport_error(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/7/feedback",
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(202, json=api.receipt()),
    )
    assert make_client().feedback(7, "t-1", []).accepted == 2
    assert len(server.requests) == 3


def test_feedback_gives_up_after_retries(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/7/feedback", api.error(503, "unavailable", "still busy"))
    with pytest.raises(ServerError) as info:
        make_client(retries=2).feedback(7, "t-1", [])
    assert info.value.type == "unavailable"
    assert len(server.requests) == 3


def test_feedback_transport_error_exhausted_is_translated(server, make_client) -> None:
    server.on("POST", "/v1/runs/7/feedback", httpx.ConnectError("refused"))
    with pytest.raises(TransportError, match="refused") as info:
        make_client(retries=1).feedback(7, "t-1", [])
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(server.requests) == 2


def test_retries_zero_disables_retry(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/7/feedback", api.error(503, "unavailable"))
    with pytest.raises(ServerError):
        make_client(retries=0).feedback(7, "t-1", [])
    assert len(server.requests) == 1


def test_feedback_not_retried_on_4xx_or_500(server, api, make_client) -> None:
    server.on("POST", "/v1/runs/7/feedback", api.error(409, "conflict", "other results"))
    server.on("POST", "/v1/runs/8/feedback", api.error(500, "internal", "bug"))
    c = make_client()
    with pytest.raises(Conflict):
        c.feedback(7, "t-1", [])
    with pytest.raises(ServerError):
        c.feedback(8, "t-1", [])
    assert len(server.requests) == 2


def test_retry_after_header_is_honoured(server, api, make_client) -> None:
    busy = httpx.Response(503, headers={"Retry-After": "3"}, text="busy")
    server.on("POST", "/v1/runs/7/feedback", busy, httpx.Response(202, json=api.receipt()))
    c = make_client(backoff=0.1)
    sleeps = _record_sleeps(c)
    c.feedback(7, "t-1", [])
    assert sleeps == [3.0]


def test_select_retried_on_503_with_one_idempotency_key(server, api, make_client) -> None:
    server.on(
        "POST",
        "/v1/runs/7/select",
        api.error(503, "unavailable"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json=api.ticket()),
    )
    c = make_client(retries=5)
    _record_sleeps(c)
    assert c.select(7, 2).ticket_id == api.ticket()["ticket_id"]
    keys = [r.headers.get("Idempotency-Key") for r in server.requests]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1  # one key for the retries
    c.select(7, 2)
    assert server.requests[-1].headers["Idempotency-Key"] != keys[0]  # a new call, a new key


def test_select_sends_the_callers_key_and_is_not_retried_on_4xx(server, api,
                                                                make_client) -> None:
    server.on("POST", "/v1/runs/7/select", api.error(409, "conflict", "key reused"))
    with pytest.raises(Conflict):
        make_client(retries=5).select(7, 2, idempotency_key="step-12")
    assert [r.headers["Idempotency-Key"] for r in server.requests] == ["step-12"]


def test_create_calls_not_retried(server, api, make_client) -> None:
    server.on("POST", "/v1/banks", httpx.ConnectError("refused"))
    server.on("POST", "/v1/runs", api.error(503, "unavailable"))
    c = make_client(retries=3)
    with pytest.raises(TransportError):
        c.create_bank("x")
    with pytest.raises(ServerError):
        c.create_run(1)
    assert len(server.requests) == 2


def test_get_requests_are_retried(server, api, make_client) -> None:
    server.on(
        "GET",
        "/v1/banks/1",
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, json=api.bank(1)),
    )
    assert make_client().get_bank(1).bank_id == 1
    assert len(server.requests) == 2


# -- lifecycle ----------------------------------------------------------------------------------


def test_context_manager_closes_owned_client(api) -> None:
    with Client(api.BASE_URL, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        pass
    assert c._http.is_closed


def test_injected_http_client_is_used_and_left_open(server, api) -> None:
    server.on("GET", "/healthz", httpx.Response(200, json={"status": "ok"}))
    http = httpx.Client(transport=httpx.MockTransport(server), headers={"X-From": "outer"})
    with Client(api.BASE_URL, token="t", http_client=http) as c:
        c.healthz()
    assert not http.is_closed
    assert server.requests[0].headers["X-From"] == "outer"
    assert _auth(server.requests[0]) == "Bearer t"
    http.close()


def test_invalid_constructor_arguments(api) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with httpx.Client() as http, pytest.raises(ValueError):
        Client(api.BASE_URL, http_client=http, transport=transport)
    with pytest.raises(ValueError):
        Client(api.BASE_URL, retries=-1)
