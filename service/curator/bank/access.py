"""Reading a bank's problems the way selection and learning need them: one home.

The database is the record; each process keeps file caches of it (bank/files.py: the
embedding store and the pre-encoded payloads) and syncs them up to the bank's size
before a lookup. Every reader goes through these functions, so "sync, then look up" and
"a metadata field as a category" are written once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from curator.bank.files import BankFiles
from curator.bank.ingest import payload_fetcher, row_fetcher
from curator.bank.store import EmbeddingStore
from curator.db.models import Bank, Problem


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


def metadata(session: Session, bank_id: int, positions: Iterable[int]) -> dict[int, dict]:
    """position → metadata of the problems at `positions` (by primary key)."""
    rows = session.execute(select(Problem.position, Problem.meta).where(
        Problem.bank_id == bank_id, Problem.position.in_([int(p) for p in positions])))
    return {int(pos): meta or {} for pos, meta in rows}


def category(meta: dict[str, Any], field: str) -> str | None:
    """A metadata field's value as a category (a string; None when absent)."""
    value = meta.get(field)
    return None if value is None else str(value)


def categories(session: Session, bank_id: int, positions: np.ndarray,
               field: str) -> list[str | None]:
    """Each position's category under `field`, in the order of `positions`."""
    metas = metadata(session, bank_id, positions.tolist())
    return [category(metas.get(int(p), {}), field) for p in positions]
