"""Bank ingest: validate everything first, then batched inserts and the embedding store."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curator.bank import access
from curator.bank.embed import Embedder, EmbedderError, bank_dim, make_embedder
from curator.bank.files import BankFiles
from curator.bank.payloads import encode as encode_payload
from curator.core.errors import Invalid
from curator.db.models import Bank, Problem

MAX_EXTERNAL_ID = 512


class IngestError(Invalid):
    """Bad problems in a request; nothing was written. `details` lists the offenders."""


@dataclass
class ProblemRecord:
    external_id: str
    prompt: str
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: Sequence[float] | np.ndarray | None = None


@dataclass
class AddResult:
    added: int
    duplicates: list[str]
    problem_ids: list[int]
    size: int
    first_position: int = 0
    vectors: np.ndarray | None = None
    payloads: list[bytes] | None = None  # encoded public JSON of the added problems


def create_bank(*, session: Session, name: str, embedder: str, dim: int | None,
                default_hash_dim: int) -> Bank:
    try:
        resolved = bank_dim(embedder, dim, default_hash_dim)
    except EmbedderError as exc:
        raise IngestError(str(exc), {"embedder": embedder, "dim": dim}) from exc
    bank = Bank(name=name, embedder=embedder, dim=resolved, size=0)
    session.add(bank)
    session.flush()
    return bank


def _finite(values: Sequence[float] | np.ndarray) -> bool:
    if isinstance(values, np.ndarray):
        return bool(np.isfinite(values).all())
    return all(math.isfinite(v) for v in values)


def _validate(bank: Bank, problems: Sequence[ProblemRecord]) -> None:
    errors = []
    for i, p in enumerate(problems):
        if not p.external_id or len(p.external_id) > MAX_EXTERNAL_ID:
            errors.append({"index": i, "field": "external_id",
                           "message": f"must be 1..{MAX_EXTERNAL_ID} characters"})
        if not p.prompt or not p.prompt.strip():
            errors.append({"index": i, "field": "prompt", "message": "must not be empty"})
        if p.embedding is not None:
            if len(p.embedding) != bank.dim:
                errors.append({"index": i, "field": "embedding",
                               "message": f"has dim {len(p.embedding)}, bank dim is {bank.dim}"})
            elif not _finite(p.embedding):
                errors.append({"index": i, "field": "embedding", "message": "must be finite"})
        elif bank.embedder == "provided":
            errors.append({"index": i, "field": "embedding",
                           "message": "this bank's embedder is 'provided': send vectors"})
    if errors:
        raise IngestError(f"{len(errors)} invalid problem(s); nothing was added", errors[:100])


def _existing_ids(session: Session, bank_id: int, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        found.update(session.scalars(
            select(Problem.external_id).where(Problem.bank_id == bank_id,
                                              Problem.external_id.in_(chunk))))
    return found


def _vectors(bank: Bank, fresh: list[ProblemRecord], embedder: Embedder | None) -> np.ndarray:
    out = np.zeros((len(fresh), bank.dim), dtype=np.float32)
    missing = [i for i, p in enumerate(fresh) if p.embedding is None]
    for i, p in enumerate(fresh):
        if p.embedding is not None:
            out[i] = np.asarray(p.embedding, dtype=np.float32)
    if missing:
        assert embedder is not None  # provided banks were refused in _validate
        out[missing] = embedder.embed([fresh[i].prompt for i in missing])
    return out


def add_problems(*, session: Session, bank: Bank, problems: Sequence[ProblemRecord],
                 embedder: Embedder | None = None, device: str = "cpu") -> AddResult:
    """Insert new problems; existing external ids are reported as duplicates, not failed.

    Commits on success. Positions are allocated by one atomic increment of the bank size,
    so concurrent ingests get disjoint, dense positions.
    """
    _validate(bank, problems)
    for attempt in range(3):
        seen: set[str] = set()
        duplicates: list[str] = []
        existing = _existing_ids(session, bank.id, [p.external_id for p in problems])
        fresh: list[ProblemRecord] = []
        for p in problems:
            if p.external_id in existing or p.external_id in seen:
                duplicates.append(p.external_id)
            else:
                seen.add(p.external_id)
                fresh.append(p)
        if not fresh:
            session.rollback()
            return AddResult(0, duplicates, [], bank.size)
        if embedder is None and bank.embedder != "provided":
            embedder = make_embedder(bank.embedder, bank.dim, device=device)
        vectors = _vectors(bank, fresh, embedder)
        try:
            payloads = [encode_payload(p.external_id, p.prompt, p.answer, p.metadata)
                        for p in fresh]
        except ValueError as exc:  # NaN/∞ inside metadata: not JSON
            raise IngestError(f"metadata must be valid JSON: {exc}") from exc
        size = session.execute(
            update(Bank).where(Bank.id == bank.id).values(size=Bank.size + len(fresh))
            .returning(Bank.size)).scalar_one()
        first = size - len(fresh)
        rows = [
            {"bank_id": bank.id, "position": first + i, "external_id": p.external_id,
             "prompt": p.prompt, "answer": p.answer, "meta": p.metadata or {},
             "embedding": vectors[i].astype("<f4").tobytes()}
            for i, p in enumerate(fresh)
        ]
        try:
            session.execute(Problem.__table__.insert(), [
                {**{k: v for k, v in r.items() if k != "meta"}, "metadata": r["meta"]}
                for r in rows
            ])
            session.commit()
        except IntegrityError:
            # A concurrent ingest added some of these ids first: re-check and retry.
            session.rollback()
            if attempt == 2:
                raise
            continue
        bank.size = size
        return AddResult(len(fresh), duplicates, list(range(first, size)), size, first, vectors,
                         payloads)
    raise RuntimeError("unreachable")


def ingest(*, session: Session, session_factory, files: BankFiles, bank: Bank,
           problems: Sequence[ProblemRecord], embedder: Embedder | None = None,
           device: str = "cpu") -> AddResult:
    """Add `problems` to the bank (committed) and append what was added to the process's
    embedding store and payload cache: the one ingest path of the API route and the CLI."""
    result = add_problems(session=session, bank=bank, problems=problems, embedder=embedder,
                          device=device)
    if result.added:
        files.store(bank.id, bank.dim).append(
            result.first_position, result.vectors, access.row_fetcher(session_factory, bank.id))
        files.payloads(bank.id).append(
            result.first_position, result.payloads,
            access.payload_fetcher(session_factory, bank.id))
    return result
