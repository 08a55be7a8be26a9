"""A run's record as Parquet over HTTP and from the CLI: every selected problem once, in
step and rank order, with the logged logit, propensity and source and the feedback."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from curator.db.models import Feedback, TicketItem
from curator.runs.export import SCHEMA, parquet_chunks, record_batches
from tests.service.helpers import (
    AUTH,
    bearer,
    make_bank,
    make_run,
    rollouts,
    running_app,
    select_and_report,
    wait_applied,
)

pytestmark = pytest.mark.anyio


async def _run_with_history(client, steps: int = 3, batch: int = 8):
    bank_id = await make_bank(client, 60)
    run_id, token = await make_run(client, bank_id, "actor_curator", {"dormant_steps": 0})
    rng = np.random.default_rng(0)
    for step in range(steps):
        await select_and_report(client, run_id, token, batch_size=batch, pool_size=24,
                                result=rollouts([1.0, 0.0, 1.0], rng))
        await wait_applied(client, run_id, step + 1)
    # one more batch handed out and never reported
    await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                      json={"batch_size": batch, "pool_size": 24})
    return run_id, token


async def test_export_streams_every_selected_problem_with_its_feedback(settings):
    async with running_app(settings) as (client, app):
        run_id, token = await _run_with_history(client)
        r = await client.get(f"/v1/runs/{run_id}/export", headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(r.content))
        with app.state.curator.session_factory() as s:
            items = s.execute(select(TicketItem.ticket_id, TicketItem.problem_id,
                                     TicketItem.propensity, TicketItem.source)).all()
            n_feedback = s.scalar(select(func.count()).select_from(Feedback))
        assert table.schema.equals(SCHEMA)
        assert table.num_rows == len(items) == 32
        rows = table.to_pylist()
        assert [(r["step"], r["rank"]) for r in rows] == sorted((r["step"], r["rank"])
                                                               for r in rows)
        logged = {(t, p): (pr, src) for t, p, pr, src in items}
        assert all(logged[(r["ticket_id"], r["problem_id"])] == (r["propensity"], r["source"])
                   for r in rows)
        reported = [r for r in rows if r["utility"] is not None]
        assert len(reported) == n_feedback == 24
        assert all(r["rewards"] == [1.0, 0.0, 1.0] and len(r["log_ratios"]) == 3
                   for r in reported)
        assert {r["ticket_state"] for r in rows} == {"applied", "issued"}
        assert all(r["external_id"].startswith("p") for r in rows)
        assert (await client.get("/v1/runs/999/export", headers=AUTH)).status_code == 404


async def test_a_long_export_is_written_a_row_group_at_a_time(sqlite_settings):
    async with running_app(sqlite_settings) as (client, app):
        run_id, _ = await _run_with_history(client)
        chunks = list(parquet_chunks(record_batches(app.state.curator.session_factory,
                                                    run_id, chunk=10)))
    whole = pq.ParquetFile(io.BytesIO(b"".join(chunks)))
    assert whole.metadata.num_rows == 32 and whole.metadata.num_row_groups == 4
    assert len(chunks) > 2  # bytes went out before the last batch was read


async def test_cli_export_writes_the_same_rows(sqlite_settings, tmp_path, monkeypatch):
    from curator.cli import main

    async with running_app(sqlite_settings) as (client, _):
        run_id, token = await _run_with_history(client)
        http = pq.read_table(io.BytesIO((await client.get(
            f"/v1/runs/{run_id}/export", headers=bearer(token))).content))
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    out = tmp_path / "run.parquet"
    assert main(["run", "export", str(run_id), "-o", str(out)]) == 0
    assert pq.read_table(out).equals(http)
    assert main(["run", "export", "999", "-o", str(tmp_path / "none.parquet")]) == 2


def test_an_empty_stream_is_a_valid_file():
    data = b"".join(parquet_chunks(iter([pa.RecordBatch.from_pylist([], schema=SCHEMA)])))
    assert pq.read_table(io.BytesIO(data)).num_rows == 0


async def test_exports_join_what_each_problem_was(sqlite_settings, tmp_path, monkeypatch):
    """`?problems=true` (and `--problems`) carry prompt, answer and metadata; the paged
    problem list gives the same per problem_id, so a plain export joins to it."""
    import json

    from curator.cli import main

    async with running_app(sqlite_settings) as (client, _):
        run_id, token = await _run_with_history(client)
        bank_id = (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()["bank_id"]
        wide = pq.read_table(io.BytesIO((await client.get(
            f"/v1/runs/{run_id}/export?problems=true", headers=bearer(token))).content))
        plain = pq.read_table(io.BytesIO((await client.get(
            f"/v1/runs/{run_id}/export", headers=bearer(token))).content))
        listed, after = {}, -1
        while after is not None:
            page = (await client.get(f"/v1/banks/{bank_id}/problems?after={after}&limit=7",
                                     headers=AUTH)).json()
            assert len(page["problems"]) <= 7
            listed.update({p["problem_id"]: p for p in page["problems"]})
            after = page["next_after"]
        r = await client.get(f"/v1/banks/{bank_id}/problems", headers=bearer(token))
        assert r.status_code == 403  # a run token does not list banks
    assert wide.column_names == plain.column_names + ["prompt", "answer", "metadata"]
    assert wide.drop_columns(["prompt", "answer", "metadata"]).equals(plain)
    for row in wide.to_pylist():
        p = listed[row["problem_id"]]
        assert (row["external_id"], row["prompt"], row["answer"]) == (
            p["external_id"], p["prompt"], p["answer"])
        assert json.loads(row["metadata"]) == p["metadata"]
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    out = tmp_path / "wide.parquet"
    assert main(["run", "export", str(run_id), "-o", str(out), "--problems"]) == 0
    assert pq.read_table(out).equals(wide)
