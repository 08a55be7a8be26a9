"""Bad input beyond tests/service/test_bad_input.py, on real SQLite and PostgreSQL.

Every case must get a 4xx in the one error shape and change nothing. The app runs with
`raise_app_exceptions=False`, so a server error shows up as the 500 a client would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from curator.app import create_app
from tests.service.helpers import AUTH, bearer, make_bank, make_run
from tests.service.test_bad_input import snapshot

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}
RAW = "__raw__"


def raw(body: dict, token: str) -> str:
    """JSON text of `body` with the RAW placeholder replaced by a literal such as NaN."""
    return json.dumps(body).replace(f'"{RAW}"', token)


@contextlib.asynccontextmanager
async def app_client(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://curator") as client:
            yield client


def check(results: list[tuple[str, httpx.Response, int | tuple[int, ...]]]) -> None:
    """Every case got a wanted status (a 4xx in the error shape); lists every miss."""
    misses = []
    for name, r, want in results:
        wanted = want if isinstance(want, tuple) else (want,)
        ok = r.status_code in wanted
        if ok and r.status_code >= 400:
            body = r.json()
            ok = set(body) == {"error"} and isinstance(body["error"].get("type"), str) \
                and bool(body["error"].get("message"))
        if not ok:
            misses.append(f"{name}: want {want}, got {r.status_code} {r.text[:160]}")
    assert not misses, "\n".join(misses)


async def setup_run(client, **run_kw) -> tuple[int, int, str, dict]:
    bank_id = await make_bank(client, n=30)
    run_id, token = await make_run(client, bank_id, **run_kw)
    ticket = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                json={"batch_size": 4, "pool_size": 8})).json()
    return bank_id, run_id, token, ticket


async def test_oversized_body_without_content_length_is_413(settings):
    """A chunked body (no Content-Length) over `max_body_bytes` is refused with 413, like
    one that declares its length."""
    settings.max_body_bytes = 20_000

    async def chunks():
        for _ in range(10):
            yield b" " * 5_000  # valid JSON whitespace: only the size is wrong
            await asyncio.sleep(0)

    async with app_client(settings) as client:
        before = snapshot(settings.sqlalchemy_url)
        r = await client.post("/v1/banks", content=chunks(), headers={**AUTH, **JSON})
        assert "content-length" not in r.request.headers
        check([("chunked 50 kB > 20 kB", r, 413)])
        assert r.json()["error"]["type"] == "payload_too_large"
        assert snapshot(settings.sqlalchemy_url) == before


async def test_more_explicit_bad_inputs(settings):
    async with app_client(settings) as client:
        bank_id, run_id, token, ticket = await setup_run(client)
        settings.max_problems_per_request = 5  # read per request from the same object
        H = bearer(token)
        sel, fb = f"/v1/runs/{run_id}/select", f"/v1/runs/{run_id}/feedback"
        pid = ticket["problems"][0]["problem_id"]
        before = snapshot(settings.sqlalchemy_url)
        cases = [
            # sizes: zero, negative, huge, beyond any integer type
            ("pool_size 0", client.post(sel, json={"batch_size": 1, "pool_size": 0},
                                        headers=H), 422),
            ("pool_size -1", client.post(sel, json={"batch_size": 1, "pool_size": -1},
                                         headers=H), 422),
            ("pool_size 10**9", client.post(sel, json={"batch_size": 1, "pool_size": 10**9},
                                            headers=H), 422),
            ("pool_size 2**64", client.post(sel, json={"batch_size": 1, "pool_size": 2**64},
                                            headers=H), 422),
            ("batch_size 2**64", client.post(sel, json={"batch_size": 2**64}, headers=H), 422),
            ("batch_size 2.5", client.post(sel, json={"batch_size": 2.5}, headers=H), 422),
            ("batch_size null", client.post(sel, json={"batch_size": None}, headers=H), 422),
            ("body is a list", client.post(sel, json=[1], headers=H), 422),
            ("bank dim 0", client.post("/v1/banks", json={"name": "z", "embedder": "provided",
                                                          "dim": 0}, headers=AUTH), 422),
            ("bank dim -3", client.post("/v1/banks", json={"name": "z", "embedder": "provided",
                                                           "dim": -3}, headers=AUTH), 422),
            ("too many problems in one request", client.post(
                f"/v1/banks/{bank_id}/problems", headers=AUTH,
                json={"problems": [{"external_id": f"m{i}", "prompt": "x"} for i in range(6)]}),
             413),
            # ids that are not integers, negative, or beyond the id type
            ("run id abc", client.post("/v1/runs/abc/select", json={"batch_size": 1},
                                       headers=H), 422),
            ("run id 1.5", client.post("/v1/runs/1.5/select", json={"batch_size": 1},
                                       headers=H), 422),
            ("run id -1", client.post("/v1/runs/-1/select", json={"batch_size": 1},
                                      headers=H), 422),
            ("run id 2**64", client.post(f"/v1/runs/{2**64}/feedback", headers=H, json={
                "ticket_id": ticket["ticket_id"], "results": [{"problem_id": pid,
                                                               "utility": 1}]}), 422),
            ("bank id abc", client.get("/v1/banks/abc", headers=AUTH), 422),
            ("bank id 2**40", client.get(f"/v1/banks/{2**40}", headers=AUTH), 422),
            ("problem_id -1", client.post(fb, headers=H, json={
                "ticket_id": ticket["ticket_id"], "results": [{"problem_id": -1,
                                                               "utility": 1}]}), 422),
            ("problem_id '7a'", client.post(fb, headers=H, json={
                "ticket_id": ticket["ticket_id"], "results": [{"problem_id": "7a",
                                                               "utility": 1}]}), 422),
            ("problem_id 2**70", client.post(fb, headers=H, json={
                "ticket_id": ticket["ticket_id"], "results": [{"problem_id": 2**70,
                                                               "utility": 1}]}), 422),
            ("ticket_id of 65 chars", client.post(fb, headers=H, json={
                "ticket_id": "a" * 65, "results": [{"problem_id": pid, "utility": 1}]}), 422),
            ("ticket_id empty", client.post(fb, headers=H, json={
                "ticket_id": "", "results": [{"problem_id": pid, "utility": 1}]}), 422),
            ("ticket_id as number", client.post(fb, headers=H, json={
                "ticket_id": 12, "results": [{"problem_id": pid, "utility": 1}]}), 422),
            # non-finite numbers the explicit suite does not send
            ("log_ratios NaN", client.post(fb, headers={**H, **JSON}, content=raw(
                {"ticket_id": ticket["ticket_id"], "results": [
                    {"problem_id": pid, "rewards": [1, 0], "log_ratios": [RAW, 0]}]}, "NaN")),
             422),
            *[(f"utility {v}", client.post(fb, headers={**H, **JSON}, content=raw(
                {"ticket_id": ticket["ticket_id"], "results": [
                    {"problem_id": pid, "utility": RAW}]}, v)), 422)
              for v in ("-Infinity", "1e999")],  # 1e999 parses as inf
            ("embedding NaN", client.post(f"/v1/banks/{bank_id}/problems",
                                          headers={**AUTH, **JSON}, content=raw(
                                              {"problems": [{"external_id": "v", "prompt": "x",
                                                             "embedding": [RAW]}]}, "NaN")),
             422),
            # empty and whitespace-only text
            ("empty prompt", client.post(f"/v1/banks/{bank_id}/problems", headers=AUTH,
                                         json={"problems": [{"external_id": "e",
                                                             "prompt": ""}]}), 422),
            ("empty external_id", client.post(f"/v1/banks/{bank_id}/problems", headers=AUTH,
                                              json={"problems": [{"external_id": "",
                                                                  "prompt": "x"}]}), 422),
            ("empty problem list", client.post(f"/v1/banks/{bank_id}/problems", headers=AUTH,
                                               json={"problems": []}), 422),
            ("empty bank name", client.post("/v1/banks", json={"name": ""}, headers=AUTH),
             422),
            # unknown fields everywhere, not only in select and results
            ("unknown field in bank", client.post("/v1/banks", headers=AUTH,
                                                  json={"name": "u", "owner": "me"}), 422),
            ("unknown field in problem", client.post(
                f"/v1/banks/{bank_id}/problems", headers=AUTH,
                json={"problems": [{"external_id": "u", "prompt": "x", "score": 1}]}), 422),
            ("unknown top-level field in problems", client.post(
                f"/v1/banks/{bank_id}/problems", headers=AUTH,
                json={"problems": [{"external_id": "u", "prompt": "x"}], "upsert": True}), 422),
            ("unknown field in run", client.post("/v1/runs", headers=AUTH,
                                                 json={"bank_id": bank_id, "owner": "me"}),
             422),
            ("unknown strategy param", client.post("/v1/runs", headers=AUTH, json={
                "bank_id": bank_id, "strategy": "actor_curator", "params": {"lr2": 1}}), 422),
            ("unknown top-level field in feedback", client.post(fb, headers=H, json={
                "ticket_id": ticket["ticket_id"], "results": [{"problem_id": pid,
                                                               "utility": 1}], "x": 1}), 422),
            ("malformed JSON", client.post(fb, headers={**H, **JSON},
                                           content=b'{"ticket_id": "x", "results": [}'), 422),
            ("not UTF-8", client.post(fb, headers={**H, **JSON},
                                      content=b'{"ticket_id": "\xff\xfe"}'), (400, 422)),
            ("deeply nested metadata", client.post(
                f"/v1/banks/{bank_id}/problems", headers={**AUTH, **JSON},
                content='{"problems": [{"external_id": "d", "prompt": "x", "metadata": {"a": '
                        + "[" * 5000 + "]" * 5000 + "}}]}"), (400, 422)),
        ]
        results = [(name, await call, want) for name, call, want in cases]
        check(results)
        assert snapshot(settings.sqlalchemy_url) == before


async def test_out_of_range_ids_are_4xx(settings):
    """Integers beyond the database's id types (int32 ids; SQLite's int64) must not reach
    the database as-is: every such request is a 4xx, never a 500."""
    async with app_client(settings) as client:
        bank_id, run_id, token, ticket = await setup_run(client)
        before = snapshot(settings.sqlalchemy_url)
        sel = f"/v1/runs/{run_id}/select"
        cases = [
            # the run id inside a run token is parsed to answer 403 for another run's token
            *[(f"token of run {n}", client.post(sel, json={"batch_size": 1},
                                                headers=bearer(f"rt_{n}_abc")), 401)
              for n in (2**31, 2**63, 10**20)],
            *[(f"bank_id {n}", client.post("/v1/runs", json={"bank_id": n}, headers=AUTH),
               (404, 422)) for n in (2**31, 2**63, 10**20)],
            ("history after 10**20", client.get(f"/v1/runs/{run_id}/history",
                                                params={"after": 10**20}, headers=AUTH),
             (200, 422)),  # an empty page is a fine answer too
            *[(f"compare runs={n}", client.get("/v1/compare", params={"runs": str(n)},
                                               headers=AUTH), (404, 422))
              for n in (2**31, 10**20)],
        ]
        check([(name, await call, want) for name, call, want in cases])
        assert snapshot(settings.sqlalchemy_url) == before


async def test_nul_characters_in_text_are_refused(settings):
    """PostgreSQL text cannot hold U+0000; both databases must refuse it the same way
    (422), not store it on SQLite and fail with a 500 on PostgreSQL."""
    async with app_client(settings) as client:
        bank_id, run_id, token, ticket = await setup_run(client)
        before = snapshot(settings.sqlalchemy_url)
        p = f"/v1/banks/{bank_id}/problems"
        cases = [
            ("prompt", client.post(p, headers=AUTH, json={"problems": [
                {"external_id": "n1", "prompt": "a\x00b"}]}), 422),
            ("answer", client.post(p, headers=AUTH, json={"problems": [
                {"external_id": "n2", "prompt": "ok", "answer": "4\x00"}]}), 422),
            ("external_id", client.post(p, headers=AUTH, json={"problems": [
                {"external_id": "n\x003", "prompt": "ok"}]}), 422),
            ("bank name", client.post("/v1/banks", json={"name": "b\x00"}, headers=AUTH), 422),
            ("run name", client.post("/v1/runs", headers=AUTH,
                                     json={"bank_id": bank_id, "name": "r\x00"}), 422),
            ("ticket_id", client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token),
                                      json={"ticket_id": "t\x00", "results": [
                                          {"problem_id": 1, "utility": 1.0}]}), (404, 422)),
        ]
        check([(name, await call, want) for name, call, want in cases])
        assert snapshot(settings.sqlalchemy_url) == before


async def test_non_finite_numbers_in_free_form_json_are_refused(settings):
    """NaN/Infinity inside `metadata` or run `params` (free-form JSON) get a 422: not a
    500, not a row that later breaks every response that carries it."""
    async with app_client(settings) as client:
        bank_id = await make_bank(client, n=5)
        before = snapshot(settings.sqlalchemy_url)
        H = {**AUTH, **JSON}
        cases = [
            ("metadata NaN", client.post(f"/v1/banks/{bank_id}/problems", headers=H, content=raw(
                {"problems": [{"external_id": "m", "prompt": "x", "metadata": {"w": RAW}}]},
                "NaN")), 422),
            ("metadata -Infinity", client.post(f"/v1/banks/{bank_id}/problems", headers=H,
                                               content=raw({"problems": [
                                                   {"external_id": "m2", "prompt": "x",
                                                    "metadata": {"w": [1, RAW]}}]},
                                                   "-Infinity")), 422),
            *[(f"params {k}={v}", client.post("/v1/runs", headers=H, content=raw(
                {"bank_id": bank_id, "strategy": "actor_curator", "params": {k: RAW}}, v)), 422)
              for k, v in (("lr", "NaN"), ("lr", "Infinity"), ("amplifier", "1e999"))],
            ("params of another strategy, NaN", client.post("/v1/runs", headers=H, content=raw(
                {"bank_id": bank_id, "strategy": "uniform", "params": {"x": RAW}}, "NaN")),
             422),
        ]
        check([(name, await call, want) for name, call, want in cases])
        assert snapshot(settings.sqlalchemy_url) == before
        r = await client.get("/v1/runs", headers=AUTH)
        assert r.status_code == 200, r.text


async def test_extreme_but_finite_feedback_cannot_break_a_run(settings):
    """Utilities of ±1e300 are finite, so they pass validation; they must not turn the
    curator's weights into NaN (after which every select of the run would be a 500)."""
    async with app_client(settings) as client:
        bank_id = await make_bank(client, n=40)
        run_id, token = await make_run(client, bank_id, "actor_curator",
                                       {"dormant_steps": 0, "hidden": 16})
        sel, fb = f"/v1/runs/{run_id}/select", f"/v1/runs/{run_id}/feedback"
        for sign in (1.0, -1.0):
            t = (await client.post(sel, json={"batch_size": 8}, headers=bearer(token))).json()
            r = await client.post(fb, headers=bearer(token), json={
                "ticket_id": t["ticket_id"],
                "results": [{"problem_id": p["problem_id"], "utility": sign * 1e300 * (i - 3)}
                            for i, p in enumerate(t["problems"])]})
            assert r.status_code in (202, 422), r.text
        for _ in range(200):
            info = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()
            if info["tickets"]["applied"] == info["tickets"]["reported"]:
                break
            await asyncio.sleep(0.05)
        r = await client.post(sel, json={"batch_size": 8}, headers=bearer(token))
        assert r.status_code == 200, r.text
        assert all(p["propensity"] > 0 for p in r.json()["problems"])
        r = await client.get(f"/v1/runs/{run_id}/distribution", headers=AUTH)
        assert r.status_code == 200, r.text


async def test_indexing_an_empty_bank_is_not_a_500(settings):
    """Found by fuzzing: FAISS could not write the index of a bank with no problems (its
    directory did not exist yet). An empty bank indexes to an empty, ready index."""
    async with app_client(settings) as client:
        r = await client.post("/v1/banks", json={"name": "empty", "embedder": "hash"},
                              headers=AUTH)
        bank_id = r.json()["bank_id"]
        r = await client.post(f"/v1/banks/{bank_id}/index", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["index"]["size"] == 0


async def test_unauthenticated_writes_are_refused_before_the_body_is_read(settings):
    """A 30 MiB body with no valid bearer must not be read, let alone parsed on the event
    loop: the gate (api/gate.py) answers from the headers alone."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://curator")
        bank_id = await make_bank(client, n=5)
        run_id, token = await make_run(client, bank_id)
        cases = [
            ({}, "/v1/banks", 401),
            ({"authorization": "Basic abc"}, f"/v1/banks/{bank_id}/problems", 401),
            ({"authorization": "Bearer nonsense"}, f"/v1/banks/{bank_id}/problems", 401),
            ({"authorization": "Bearer nonsense"}, f"/v1/runs/{run_id}/feedback", 401),
            ({}, f"/v1/runs/{run_id}/select", 401),
            ({"authorization": f"Bearer {token}"}, f"/v1/banks/{bank_id}/problems", 403),
            ({"authorization": f"Bearer {token}"}, "/v1/runs", 403),
        ]
        for headers, path, want in cases:
            reads = 0

            async def receive():
                nonlocal reads
                reads += 1
                return {"type": "http.request", "body": b"[" * 1024, "more_body": True}

            sent = []

            async def send(message, sent=sent):
                sent.append(message)

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "POST", "scheme": "http", "path": path,
                     "raw_path": path.encode(), "query_string": b"", "root_path": "",
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(30 * 2**20).encode()),
                                 *[(k.encode(), v.encode()) for k, v in headers.items()]],
                     "server": ("curator", 80), "client": ("127.0.0.1", 5000)}
            await asyncio.wait_for(app(scope, receive, send), timeout=5)
            assert sent[0]["status"] == want, (path, headers, sent)
            assert json.loads(sent[1]["body"])["error"]["type"] in ("unauthorized", "forbidden")
            assert reads == 0, f"{path}: body read {reads} times before refusing"
        await client.aclose()
