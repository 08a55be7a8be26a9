"""History "selected share by field" from the per-ticket counts the worker records
(history.selected_by), against the join over the tickets' items it replaces."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import event, select, update

from curator.admin import views
from curator.db.models import HistoryPoint, Run
from curator.db.session import make_engine, make_session_factory
from curator.runs.selected_by import (
    MAX_FIELDS,
    MAX_VALUE_CHARS,
    MAX_VALUES,
    NONE_VALUE,
    OTHER_VALUE,
    count_selected,
    field_counts,
)
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app, wait_applied

pytestmark = pytest.mark.anyio

STEPS = 5
BATCH = 40


def meta(i: int) -> dict:
    out = {"group": i % 3, "level": ["easy", "medium", "hard", None][i % 4]}
    if i % 5 == 0:
        out["tag"] = "five"  # a field only some problems carry
    return out


async def run_steps(client, run_id: int, token: str) -> list[list[dict]]:
    """STEPS select → feedback rounds; the metadata of each step's selected problems."""
    chosen = []
    for step in range(STEPS):
        ticket = (await client.post(f"/v1/runs/{run_id}/select", headers=bearer(token),
                                    json={"batch_size": BATCH, "pool_size": 120})).json()
        chosen.append([p["metadata"] for p in ticket["problems"]])
        r = await client.post(f"/v1/runs/{run_id}/feedback", headers=bearer(token), json={
            "ticket_id": ticket["ticket_id"],
            "results": [{"problem_id": p["problem_id"], "utility": 0.0}
                        for p in ticket["problems"]]})
        assert r.status_code == 202, r.text
        await wait_applied(client, run_id, step + 1)
    return chosen


def truth(metas: list[dict], field: str) -> dict[str, float]:
    c = Counter(views.group_value(m, field) for m in metas)
    return {k: v / len(metas) for k, v in c.items()}


class Statements:
    """Every SQL statement an engine runs while recording."""

    def __init__(self, engine) -> None:
        self.seen: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, *args) -> None:
        self.seen.append((statement, parameters))

    def touching(self, table: str) -> list[tuple[str, object]]:
        return [(s, p) for s, p in self.seen if table in s]


def shares(page) -> list[dict[str, float]]:
    return [p.selected_by for p in page.points]


async def test_history_by_field_reads_the_recorded_counts(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=300, metadata=meta)
        run_id, token = await make_run(client, bank_id, "uniform")
        chosen = await run_steps(client, run_id, token)

    engine = make_engine(settings.sqlalchemy_url)
    statements = Statements(engine)
    sf = make_session_factory(engine)
    try:
        with sf() as s:
            recorded = s.execute(select(HistoryPoint.step, HistoryPoint.selected_by)
                                 .where(HistoryPoint.run_id == run_id)
                                 .order_by(HistoryPoint.step)).all()
            assert [step for step, _ in recorded] == list(range(1, STEPS + 1))
            for (_, agg), metas in zip(recorded, chosen):
                assert agg == count_selected(metas)  # written by the worker, per ticket
                assert agg["n"] == BATCH and set(agg["fields"]) >= {"group", "level"}

            run = s.get(Run, run_id)
            statements.seen.clear()
            fast = {by: views.history(session=s, run=run, by=by) for by in ("group", "level",
                                                                              "tag")}
            assert statements.touching("ticket_items") == []  # history rows only
            for by, page in fast.items():
                assert shares(page) == [pytest.approx(truth(m, by)) for m in chosen], by
            assert set(fast["level"].values) == {"easy", "medium", "hard", NONE_VALUE}

            # the join over the items (the path before the aggregate) gives the same page
            s.execute(update(HistoryPoint).where(HistoryPoint.run_id == run_id)
                      .values(selected_by=None))
            s.commit()
            for by, page in fast.items():
                slow = views.history(session=s, run=run, by=by)
                assert slow.values == page.values, by
                assert shares(slow) == [pytest.approx(x) for x in shares(page)], by
            assert statements.touching("ticket_items")
    finally:
        engine.dispose()


async def test_points_without_the_aggregate_are_counted_from_their_items(settings):
    """Rows recorded before migration 0003 (selected_by NULL) next to new ones."""
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=300, metadata=meta)
        run_id, token = await make_run(client, bank_id, "uniform")
        chosen = await run_steps(client, run_id, token)

    engine = make_engine(settings.sqlalchemy_url)
    statements = Statements(engine)
    sf = make_session_factory(engine)
    try:
        with sf() as s:
            old = s.scalars(select(HistoryPoint.ticket_id).where(
                HistoryPoint.run_id == run_id, HistoryPoint.step <= 2)).all()
            s.execute(update(HistoryPoint).where(HistoryPoint.ticket_id.in_(old))
                      .values(selected_by=None))
            s.commit()
            run = s.get(Run, run_id)
            statements.seen.clear()
            page = views.history(session=s, run=run, by="group")
            assert shares(page) == [pytest.approx(truth(m, "group")) for m in chosen]
            (_, params), = statements.touching("ticket_items")  # one join, old tickets only
            values = params.values() if isinstance(params, dict) else params
            assert sorted(v for v in values if isinstance(v, str)) == sorted(old)
            tail = views.history(session=s, run=run, by="level", limit=3, tail=True)
            assert [p.step for p in tail.points] == [3, 4, 5]
            assert shares(tail) == [pytest.approx(truth(m, "level")) for m in chosen[2:]]
            plain = views.history(session=s, run=run)
            assert all(p.selected_by is None for p in plain.points)
    finally:
        engine.dispose()


async def test_absent_field_gives_empty_shares(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=300, metadata=meta)
        run_id, token = await make_run(client, bank_id, "uniform")
        await run_steps(client, run_id, token)
        h = (await client.get(f"/v1/runs/{run_id}/history?by=nope", headers=AUTH)).json()
        assert h["values"] == [] and len(h["points"]) == STEPS
        assert all(p["selected_by"] == {} for p in h["points"])

    engine = make_engine(settings.sqlalchemy_url)
    sf = make_session_factory(engine)
    try:
        with sf() as s:  # the same through the join, for points without the aggregate
            s.execute(update(HistoryPoint).where(HistoryPoint.run_id == run_id)
                      .values(selected_by=None))
            s.commit()
            page = views.history(session=s, run=s.get(Run, run_id), by="nope")
            assert page.values == [] and shares(page) == [{}] * STEPS
    finally:
        engine.dispose()


def test_count_selected_is_bounded():
    metas = [{"id": f"x{i}", "text": "y" * (MAX_VALUE_CHARS + 1), "k": i % 2} for i in range(100)]
    metas += [None, {}]
    agg = count_selected(metas)
    assert agg["n"] == 102 and "fields_capped" not in agg
    ids = agg["fields"]["id"]
    assert len(ids) == MAX_VALUES + 1 and ids[NONE_VALUE] == 2  # the most frequent value
    assert ids[OTHER_VALUE] == 100 - (MAX_VALUES - 1)  # 31 ids kept, the rest are (other)
    assert agg["fields"]["text"] == {OTHER_VALUE: 100, NONE_VALUE: 2}
    assert agg["fields"]["k"] == {"0": 50, "1": 50, NONE_VALUE: 2}
    assert all(sum(c.values()) == 102 for c in agg["fields"].values())

    wide = [{f"f{j:02d}": (i if j % 2 else j) for j in range(MAX_FIELDS + 4)}
            for i in range(10)]
    agg = count_selected(wide)
    assert agg["fields_capped"] is True and len(agg["fields"]) == MAX_FIELDS
    # the constant (categorical) fields are kept before the many-valued ones
    assert all(f"f{j:02d}" in agg["fields"] for j in range(0, MAX_FIELDS + 4, 2))
    assert field_counts(agg, "f00") == (Counter({"0": 10}), True)
    assert field_counts(agg, f"f{MAX_FIELDS + 3:02d}") is None  # left out: count from items
    assert field_counts(count_selected(metas), "absent") == (Counter({NONE_VALUE: 102}), False)
    assert field_counts(count_selected([]), "k") == (Counter(), False)
    assert field_counts(None, "k") is None
