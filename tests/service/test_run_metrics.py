"""Trainer-reported metrics (`POST /v1/runs/{run}/metrics`): kept once, replays and
conflicts as for feedback, refused when malformed, read back as series and in /compare —
on SQLite and PostgreSQL, through the real client."""

from __future__ import annotations

import httpx
import pytest

from curator_client import AsyncClient, Conflict, InvalidRequest
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio


async def test_metrics_are_kept_once_and_read_back(settings):
    async with running_app(settings) as (client, app):
        run_id, token = await make_run(client, await make_bank(client, n=20))
        other, _ = await make_run(client, await make_bank(client, n=20, name="o"))
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://curator", token, transport=transport) as c:
            assert await c.log_metrics(run_id, 10, {"eval_accuracy": 0.5, "pass@4": 0.7}) \
                == {"accepted": 2, "replayed": 0}
            assert await c.log_metrics(run_id, 10, {"eval_accuracy": 0.5}) \
                == {"accepted": 0, "replayed": 1}  # a retry
            assert (await c.log_metrics(run_id, 20, {"eval_accuracy": 0.625}))["accepted"] == 1
            with pytest.raises(Conflict) as info:
                await c.log_metrics(run_id, 10, {"eval_accuracy": 0.9, "new": 1.0})
            assert "eval_accuracy" in str(info.value)
            for bad in ({}, {"x": 1e13}, {"": 1.0}):  # (NaN: the client cannot encode it)
                with pytest.raises(InvalidRequest):
                    await c.log_metrics(run_id, 30, bad)
        r = await client.post(f"/v1/runs/{run_id}/metrics", headers=bearer(token),
                              json={"step": -1, "metrics": {"x": 1}})
        assert r.status_code == 422
        r = await client.post(f"/v1/runs/{other}/metrics", headers=bearer(token),
                              json={"step": 1, "metrics": {"x": 1}})
        assert r.status_code == 403  # another run's token
        series = (await client.get(f"/v1/runs/{run_id}/metrics", headers=bearer(token))).json()
        assert series == {"metrics": {"eval_accuracy": [[10, 0.5], [20, 0.625]],
                                      "pass@4": [[10, 0.7]]}}  # nothing of the 409 kept
        cmp = (await client.get(f"/v1/compare?runs={run_id},{other}&top=0",
                                headers=AUTH)).json()
        by_id = {x["run"]["run_id"]: x for x in cmp["runs"]}
        assert by_id[run_id]["metrics"]["eval_accuracy"] == [[10, 0.5], [20, 0.625]]
        assert by_id[other]["metrics"] == {}
