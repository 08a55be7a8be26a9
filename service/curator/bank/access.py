"""Reading a bank's problems the way selection and learning need them: one home.

The database is the record; each process keeps file caches of it (bank/files.py: the
embedding store and the pre-encoded payloads) and syncs them up to the bank's size
before a lookup. Every reader goes through these functions, so "sync, then look up" and
"a metadata field as a category" are written once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, ColumnElement, Select, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, defer, sessionmaker

from curator.bank.files import BankFiles
from curator.bank.store import EmbeddingStore, RowFetcher
from curator.db.models import Bank, Problem


def payload_fetcher(session_factory, bank_id: int):
    """A fetcher the payload store uses to fill itself from the database."""

    def fetch(start: int, limit: int):
        with session_factory() as s:
            return list(s.execute(
                select(Problem.position, Problem.external_id, Problem.prompt, Problem.answer,
                       Problem.meta)
                .where(Problem.bank_id == bank_id, Problem.position >= start)
                .order_by(Problem.position).limit(limit)).all())

    return fetch


def row_fetcher(session_factory, bank_id: int) -> RowFetcher:
    """A fetcher the embedding store uses to fill itself from the database."""

    def fetch(start: int, limit: int) -> list[tuple[int, bytes]]:
        with session_factory() as s:
            return list(s.execute(
                select(Problem.position, Problem.embedding)
                .where(Problem.bank_id == bank_id, Problem.position >= start)
                .order_by(Problem.position).limit(limit)).all())

    return fetch


def synced_store(files: BankFiles, session_factory: sessionmaker[Session],
                 bank: Bank) -> EmbeddingStore:
    """The bank's embedding store, holding every problem the database has."""
    store = files.store(bank.id, bank.dim)
    store.sync(bank.size, row_fetcher(session_factory, bank.id))
    return store


def embeddings(files: BankFiles, session_factory: sessionmaker[Session], bank: Bank,
               positions: np.ndarray) -> np.ndarray:
    """float32 [len(positions), dim] vectors of the problems at `positions`."""
    return synced_store(files, session_factory, bank).lookup(positions)


def payloads(files: BankFiles, session_factory: sessionmaker[Session], bank: Bank,
             positions: list[int]) -> list[bytes]:
    """The pre-encoded JSON fields (bank/payloads.py) of the problems at `positions`."""
    store = files.payloads(bank.id)
    store.sync(bank.size, payload_fetcher(session_factory, bank.id))
    return store.lookup(positions)


_IN_CHUNK = 2000  # positions per IN list where the database has no array parameter


def _position_filters(session: Session, positions: Iterable[int]) -> list[ColumnElement[bool]]:
    """WHERE clauses that together cover `positions`: one `= ANY(array)` on PostgreSQL
    (a single parameter: a 20,000-item IN list costs it ~10× the time, in planning and
    binding), IN lists of at most `_IN_CHUNK` elsewhere (SQLite's parameter limit)."""
    ids = [int(p) for p in positions]
    if session.get_bind().dialect.name == "postgresql":
        return [Problem.position == any_(bindparam("positions", ids, type_=ARRAY(BigInteger)))]
    return [Problem.position.in_(ids[i:i + _IN_CHUNK]) for i in range(0, len(ids), _IN_CHUNK)]


def metadata(session: Session, bank_id: int, positions: Iterable[int]) -> dict[int, dict]:
    """position → metadata of the problems at `positions` (by primary key)."""
    out: dict[int, dict] = {}
    for where in _position_filters(session, positions):
        rows = session.execute(select(Problem.position, Problem.meta).where(
            Problem.bank_id == bank_id, where))
        out.update((int(pos), meta or {}) for pos, meta in rows)
    return out


def field_values(session: Session, bank_id: int, positions: np.ndarray | None,
                 field: str) -> dict[int, Any]:
    """position → the value of one metadata field (JSON null or absent: left out), for
    `positions` or (None) the whole bank: the value `meta[field]` gives in Python.

    The database extracts the field, so a view over 20,000 problems does not decode
    20,000 whole metadata objects (~190 → 110 ms on SQLite, ~550 → 120 ms on
    PostgreSQL, bench/results/history_latency.md)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":  # as text with its JSON type: psycopg's per-row JSON
        # decoding of `->` doubled the time of a 20,000-problem read
        query = select(Problem.position, func.json_typeof(Problem.meta[field]),
                       Problem.meta[field].as_string())
    elif dialect == "sqlite" and field.isascii() and not set(field) & {'"', "\\"}:
        query = _sqlite_field(field)
    else:  # a key SQLite's JSON path cannot address (quotes; non-ASCII keys are stored
        # \u-escaped and do not match): the whole metadata, the field taken in Python
        return {pos: meta[field] for pos, meta in
                _metadata_rows(session, bank_id, positions) if meta.get(field) is not None}
    query = query.where(Problem.bank_id == bank_id)
    filters = [None] if positions is None else _position_filters(session, positions)
    out: dict[int, Any] = {}
    for where in filters:
        for row in session.execute(query if where is None else query.where(where)):
            value = _typed_value(row[1], row[2])
            if value is not None:
                out[int(row[0])] = value
    return out


def _sqlite_field(field: str) -> Select:
    """SQLite: the field's JSON type beside its value; json_extract alone reads true as
    1 and hands objects and arrays back as JSON text."""
    path = f'$."{field}"'
    return select(Problem.position, func.json_type(Problem.meta, path),
                  func.json_extract(Problem.meta, path))


def _typed_value(kind: str | None, value: Any) -> Any:
    """A field read as (JSON type, value) back to what `json.loads` gives: SQLite's
    json_type with json_extract, PostgreSQL's json_typeof with `->>` (text)."""
    if kind in (None, "null"):
        return None
    if kind in ("true", "false"):  # SQLite
        return kind == "true"
    if kind == "boolean":  # PostgreSQL
        return value == "true"
    if kind in ("object", "array"):
        return json.loads(value)
    if kind == "number":  # PostgreSQL: the number's JSON text
        return int(value) if value.lstrip("-").isdigit() else float(value)
    return value  # SQLite integer/real/text, PostgreSQL string


def _metadata_rows(session: Session, bank_id: int,
                   positions: np.ndarray | None) -> Iterable[tuple[int, dict]]:
    if positions is not None:
        return metadata(session, bank_id, positions).items()
    query = select(Problem.position, Problem.meta).where(Problem.bank_id == bank_id)
    return ((int(pos), meta or {}) for pos, meta in session.execute(query))


def as_category(value: Any) -> str | None:
    """A metadata value as a category: a string; None when absent."""
    return None if value is None else str(value)


def categories(session: Session, bank_id: int, positions: np.ndarray,
               field: str) -> list[str | None]:
    """Each position's category under `field`, in the order of `positions`."""
    values = field_values(session, bank_id, positions, field)
    return [as_category(values.get(p)) for p in positions.tolist()]


def problems_page(session: Session, bank_id: int, *, after: int = -1,
                  limit: int = 1000) -> list[Problem]:
    """Up to `limit` problems with positions above `after`, in position order (a page of
    `GET /v1/banks/{bank}/problems`: keyset paging, so a page costs the same deep into a
    large bank). The embedding column is not read."""
    return list(session.scalars(
        select(Problem).options(defer(Problem.embedding))
        .where(Problem.bank_id == bank_id, Problem.position > after)
        .order_by(Problem.position).limit(limit)))
