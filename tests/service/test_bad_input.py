"""Every bad input gets its 4xx in the one error shape and changes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio

TABLES = ["banks", "problems", "runs", "tickets", "ticket_items", "feedback", "checkpoints",
          "history"]


def snapshot(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
        runs = conn.execute(text("SELECT id, cursor, step, model_version FROM runs ORDER BY id"))
        counts["runs_state"] = [tuple(r) for r in runs]
        counts["ticket_states"] = sorted(
            tuple(r) for r in conn.execute(text("SELECT id, state FROM tickets")))
        counts["bank_sizes"] = [tuple(r) for r in conn.execute(
            text("SELECT id, size FROM banks ORDER BY id"))]
    engine.dispose()
    return counts


def assert_error(r, status: int, etype: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == etype
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_bad_inputs_are_refused_and_change_nothing(settings):
    settings.max_body_bytes = 200_000
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=30)
        empty = (await client.post("/v1/banks", json={"name": "empty"}, headers=AUTH)).json()
        run_id, token = await make_run(client, bank_id)
        empty_run, empty_token = await make_run(client, empty["bank_id"])
        r = await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 4,
                                                                  "pool_size": 8},
                              headers=bearer(token))
        ticket = r.json()
        pid = ticket["problems"][0]["problem_id"]
        outside = next(i for i in range(30)
                       if i not in {p["problem_id"] for p in ticket["problems"]})
        before = snapshot(settings.sqlalchemy_url)
        H = bearer(token)
        sel = f"/v1/runs/{run_id}/select"
        fb = f"/v1/runs/{run_id}/feedback"

        def feedback(results, ticket_id=ticket["ticket_id"]):
            return client.post(fb, json={"ticket_id": ticket_id, "results": results}, headers=H)

        cases = [
            (client.post("/v1/runs/9999/select", json={"batch_size": 1}, headers=AUTH),
             404, "not_found"),
            (feedback([{"problem_id": pid, "utility": 1.0}], "f" * 32), 404, "not_found"),
            (feedback([{"problem_id": outside, "utility": 1.0}]), 422, "invalid_request"),
            (client.post(fb, content=json.dumps({"ticket_id": ticket["ticket_id"], "results": [
                {"problem_id": pid, "utility": float("nan")}]}), headers={
                    **H, "content-type": "application/json"}), 422, "invalid_request"),
            (client.post(fb, content='{"ticket_id": "' + ticket["ticket_id"] + '", "results": '
                         '[{"problem_id": ' + str(pid) + ', "rewards": [1, Infinity]}]}',
                         headers={**H, "content-type": "application/json"}),
             422, "invalid_request"),
            (feedback([{"problem_id": pid, "rewards": [1, 0], "log_ratios": [0.1]}]),
             422, "invalid_request"),
            (feedback([{"problem_id": pid, "log_ratios": [0.1]}]), 422, "invalid_request"),
            (feedback([{"problem_id": pid}]), 422, "invalid_request"),
            (feedback([]), 422, "invalid_request"),
            (feedback([{"problem_id": pid, "utility": 1.0}, {"problem_id": pid, "utility": 2.0}]),
             422, "invalid_request"),
            (feedback([{"problem_id": pid, "utility": 1.0, "extra": 1}]), 422,
             "invalid_request"),
            (client.post(sel, json={"batch_size": 9, "pool_size": 8}, headers=H),
             422, "invalid_request"),
            (client.post(sel, json={"batch_size": 31}, headers=H), 422, "invalid_request"),
            (client.post(sel, json={"batch_size": 0}, headers=H), 422, "invalid_request"),
            (client.post(sel, json={"batch_size": -3}, headers=H), 422, "invalid_request"),
            (client.post(sel, json={"batch_size": 10**12}, headers=H), 422, "invalid_request"),
            (client.post(sel, json={"batch_size": 2, "surprise": True}, headers=H),
             422, "invalid_request"),
            (client.post(sel, content="not json", headers={**H, "content-type":
                                                           "application/json"}),
             422, "invalid_request"),
            (client.post(f"/v1/runs/{empty_run}/select", json={"batch_size": 1},
                         headers=bearer(empty_token)), 422, "invalid_request"),
            (client.post(sel, json={"batch_size": 2}, headers=bearer("wrong")),
             401, "unauthorized"),
            (client.post(sel, json={"batch_size": 2}, headers=bearer(empty_token)),
             403, "forbidden"),
            (client.post(sel, json={"batch_size": 2}), 401, "unauthorized"),
            (client.post("/v1/runs", json={"bank_id": bank_id, "strategy": "nope"},
                         headers=AUTH), 422, "invalid_request"),
            (client.post("/v1/runs", json={"bank_id": 12345}, headers=AUTH), 404, "not_found"),
            (client.post(f"/v1/banks/{bank_id}/problems", json={"problems": [
                {"external_id": "ok", "prompt": "fine"},
                {"external_id": "bad", "prompt": "   "}]}, headers=AUTH),
             422, "invalid_request"),
            (client.post(f"/v1/banks/{bank_id}/problems", json={"problems": [
                {"external_id": "vec", "prompt": "x", "embedding": [0.1, 0.2]}]}, headers=AUTH),
             422, "invalid_request"),
            (client.post(f"/v1/banks/{bank_id}/problems", json={"problems": [
                {"external_id": "big", "prompt": "x" * 150_000},
                {"external_id": "big2", "prompt": "y" * 150_000}]}, headers=AUTH),
             413, "payload_too_large"),
            (client.post("/v1/banks", json={"name": "p", "embedder": "provided"}, headers=AUTH),
             422, "invalid_request"),
            (client.post("/v1/banks", json={"name": "b"}, headers=AUTH), 409, "conflict"),
            (client.get("/v1/banks/77", headers=AUTH), 404, "not_found"),
        ]
        for i, (call, status, etype) in enumerate(cases):
            r = await call
            try:
                assert_error(r, status, etype)
            except AssertionError as exc:
                raise AssertionError(f"case {i}: {exc}") from exc
        assert snapshot(settings.sqlalchemy_url) == before


async def test_unicode_prompts_and_duplicates(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=3)
        r = await client.post(f"/v1/banks/{bank_id}/problems", json={"problems": [
            {"external_id": "p0", "prompt": "dup"},
            {"external_id": "ü-1", "prompt": "Résous 𝑥² = 4 — 答えは？", "metadata": {"k": "√"}},
            {"external_id": "ü-1", "prompt": "again"}]}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"added": 1, "duplicates": ["p0", "ü-1"], "problem_ids": [3],
                            "size": 4}
        run_id, token = await make_run(client, bank_id)
        r = await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 4},
                              headers=bearer(token))
        prompts = {p["prompt"] for p in r.json()["problems"]}
        assert "Résous 𝑥² = 4 — 答えは？" in prompts


async def test_sizes_and_ids_are_integers(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=10)
        run_id, token = await make_run(client, bank_id)
        sel = f"/v1/runs/{run_id}/select"
        for body in ({"batch_size": "3"}, {"batch_size": 3.5}, {"batch_size": True},
                     {"batch_size": 2, "pool_size": "4"}, {"batch_size": 2, "pool_size": 4.2}):
            r = await client.post(sel, json=body, headers=bearer(token))
            assert r.status_code == 422, (body, r.text)
        # 3.0 is an integer in JSON Schema (what the OpenAPI document declares): accepted
        r = await client.post(sel, json={"batch_size": 3.0, "pool_size": 6.0},
                              headers=bearer(token))
        assert r.status_code == 200 and len(r.json()["problems"]) == 3, r.text
        r = await client.post(sel, json={"batch_size": 2}, headers=bearer(token))
        t = r.json()
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": t["ticket_id"],
            "results": [{"problem_id": str(t["problems"][0]["problem_id"]), "utility": 1}]})
        assert r.status_code == 422
        # integers stay welcome where numbers are expected (rewards 0/1, utility 1)
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": t["ticket_id"],
            "results": [{"problem_id": p["problem_id"], "rewards": [1, 0, 1], "utility": 1}
                        for p in t["problems"]]})
        assert r.status_code == 202
