"""Alembic migrations on real SQLite and PostgreSQL: head matches the ORM models, 0003
upgrades a database holding history recorded before it, and downgrades cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from curator.admin import views
from curator.db.migrate import alembic_config
from curator.db.models import Base, Run
from curator.db.session import make_session_factory
from tests.conftest import PG_HOST, PG_PORT, postgres_available, scratch_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path) -> Iterator[str]:
    """An empty database (not migrated) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    if not postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    with scratch_pg_database("curator_mig") as url:
        yield url


def history_columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("history")}


def test_0003_keeps_old_history_readable(empty_url):
    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "0002")
    engine = create_engine(empty_url)
    try:
        assert "selected_by" not in history_columns(engine)
        with engine.begin() as conn:  # a run with one applied ticket, recorded at 0002
            conn.execute(text(
                "INSERT INTO banks (id, name, embedder, dim, size, created_at) "
                "VALUES (1, 'b', 'hash', 4, 6, CURRENT_TIMESTAMP)"))
            for pos in range(6):
                meta = json.dumps({"group": pos % 2} if pos < 5 else {})
                conn.execute(text(
                    "INSERT INTO problems (bank_id, position, external_id, prompt, metadata, "
                    "embedding) VALUES (1, :pos, :ext, 'p', :meta, :emb)"),
                    {"pos": pos, "ext": f"p{pos}", "meta": meta, "emb": b"\0" * 16})
            conn.execute(text(
                "INSERT INTO runs (id, bank_id, strategy, params, seed, token_hash, revoked, "
                "cursor, step, model_version, stats, created_at) VALUES (1, 1, 'uniform', "
                "'{}', 0, 'x', false, 4, 1, 1, '{}', CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO tickets (id, run_id, step, model_version, pool_size, state, "
                "accepted, attempts, created_at) VALUES ('t1', 1, 1, 0, 6, 'applied', 4, 0, "
                "CURRENT_TIMESTAMP)"))
            for rank, pos in enumerate([0, 1, 2, 5]):
                conn.execute(text(
                    "INSERT INTO ticket_items (ticket_id, problem_id, rank, logit, propensity, "
                    "source) VALUES ('t1', :pos, :rank, 0, 0.25, 'explore')"),
                    {"pos": pos, "rank": rank})
            conn.execute(text(
                "INSERT INTO history (run_id, ticket_id, step, model_version, n_items, extra, "
                "created_at) VALUES (1, 't1', 1, 1, 4, '{}', CURRENT_TIMESTAMP)"))

        command.upgrade(cfg, "head")
        assert "selected_by" in history_columns(engine)
        with engine.connect() as conn:  # the ORM models match the migrated schema
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert conn.scalar(text("SELECT selected_by FROM history")) is None
        with make_session_factory(engine)() as s:
            page = views.history(session=s, run=s.get(Run, 1), by="group")
            assert page.points[0].selected_by == pytest.approx(
                {"0": 0.5, "1": 0.25, "(none)": 0.25})  # counted from the ticket's items

        command.downgrade(cfg, "0002")
        assert "selected_by" not in history_columns(engine)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM history")) == 1
        command.upgrade(cfg, "head")
        assert "selected_by" in history_columns(engine)
    finally:
        engine.dispose()


def test_0005_downgrade_folds_checkpoint_parts_back(empty_url):
    """A two-part checkpoint (0005) is one whole state again after the downgrade, and
    reads the same after upgrading once more."""
    from sqlalchemy import select

    from curator.curation.checkpoint import loads
    from curator.db.models import Checkpoint
    from curator.runs.strategy_store import fresh_strategy, load_strategy, write_checkpoint

    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "head")
    engine = create_engine(empty_url)
    try:
        sf = make_session_factory(engine)
        with sf() as s:
            s.execute(text("INSERT INTO banks (id, name, embedder, dim, size, created_at) "
                           "VALUES (1, 'b', 'provided', 4, 0, CURRENT_TIMESTAMP)"))
            run = Run(id=1, bank_id=1, strategy="actor_curator", params={}, seed=5,
                      token_hash="x")
            s.add(run)
            s.commit()
            whole = fresh_strategy(run, 4, "cpu").state_dict()
            write_checkpoint(s, 1, 1, fresh_strategy(run, 4, "cpu"))
            s.commit()
        command.downgrade(cfg, "0004")
        with engine.connect() as conn:
            assert "selection" not in {c["name"] for c in inspect(engine)
                                       .get_columns("checkpoints")}
            blob = conn.scalar(text("SELECT blob FROM checkpoints"))
        assert loads(bytes(blob)).keys() == whole.keys()
        command.upgrade(cfg, "head")
        with sf() as s:
            assert s.scalar(select(Checkpoint.selection)) is None  # read as a pre-0005 row
            loaded = load_strategy(s, s.get(Run, 1), 1, 4, "cpu").state_dict()
        assert loaded.keys() == whole.keys()
    finally:
        engine.dispose()


def test_migrations_import_nothing_of_the_algorithm_or_the_service():
    """A migration replayed later must mean what it meant when written: it carries its
    own copy of any codec it needs (0005's checkpoint codec) instead of importing live
    code. (The versions folder is not a package, so import-linter cannot see it.)"""
    import ast
    from pathlib import Path

    import curator.db

    versions = Path(curator.db.__file__).parent / "migrations" / "versions"
    offenders = []
    for path in sorted(versions.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("curator")]
    assert len(list(versions.glob("*.py"))) >= 7
    assert not offenders, offenders
