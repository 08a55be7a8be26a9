"""Banks: create, inspect, bulk-add problems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from curator.api.deps import AdminDep, BankDep, SessionDep, StateDep
from curator.api.errors import Conflict, PayloadTooLarge
from curator.api.schemas import (
    BankCreate,
    BankList,
    BankPublic,
    IndexInfo,
    ProblemOut,
    ProblemPage,
    ProblemsAdd,
    ProblemsAdded,
)
from curator.bank import access
from curator.bank.ingest import ProblemRecord, create_bank, ingest
from curator.db.models import Bank
from curator.state import AppState

router = APIRouter(prefix="/v1/banks", tags=["banks"], dependencies=[AdminDep])


def bank_public(state: AppState, bank: Bank, *, with_index: bool = False) -> BankPublic:
    info = None
    if with_index:
        index_state, ntotal = state.files.index(bank.id).state(bank.size)
        info = IndexInfo(state=index_state, size=ntotal,
                         store_rows=state.files.store(bank.id, bank.dim).rows)
    return BankPublic(bank_id=bank.id, name=bank.name, embedder=bank.embedder, dim=bank.dim,
                      size=bank.size, index=info)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a problem bank")
def create(body: BankCreate, session: SessionDep, state: StateDep) -> BankPublic:
    """A new, empty bank. Its embedder decides what the curator reads of each problem:
    `hash` (hashed n-grams, instant), `minilm` (all-MiniLM-L6-v2, dim 384) or `provided`
    (you send an `embedding` with every problem; `dim` required). Names are unique."""
    if session.scalar(select(Bank.id).where(Bank.name == body.name)) is not None:
        raise Conflict(f"a bank named {body.name!r} exists", {"name": body.name})
    try:
        bank = create_bank(session=session, name=body.name, embedder=body.embedder,
                           dim=body.dim, default_hash_dim=state.settings.hash_embedder_dim)
        session.commit()
    except IntegrityError as exc:
        raise Conflict(f"a bank named {body.name!r} exists", {"name": body.name}) from exc
    return bank_public(state, bank)


@router.get("", summary="List banks")
def list_banks(session: SessionDep, state: StateDep) -> BankList:
    """Every bank with its size, embedder and dimension."""
    banks = session.scalars(select(Bank).order_by(Bank.id))
    return BankList(banks=[bank_public(state, b) for b in banks])


@router.get("/{bank_id}", summary="Get a bank, with its index state")
def get(bank: BankDep, state: StateDep) -> BankPublic:
    """One bank, with its FAISS index state and the rows of its embedding store."""
    return bank_public(state, bank, with_index=True)


@router.get("/{bank_id}/problems", summary="List a bank's problems (paged)")
def list_problems(bank: BankDep, session: SessionDep,
                  after: Annotated[int, Query(ge=-1, le=2**62, description=(
                      "problems with problem_id above this; -1 from the start"))] = -1,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> ProblemPage:
    """What each problem of the bank is, by problem_id, a page at a time: join a run's
    export or history to it (`problem_id` or `external_id`)."""
    rows = access.problems_page(session, bank.id, after=after, limit=limit)
    return ProblemPage(
        problems=[ProblemOut(problem_id=p.position, external_id=p.external_id,
                             prompt=p.prompt, answer=p.answer, metadata=p.meta or {})
                  for p in rows],
        next_after=rows[-1].position if len(rows) == limit else None)


@router.post("/{bank_id}/problems", summary="Add problems to a bank (bulk)")
async def add(bank: BankDep, body: ProblemsAdd, session: SessionDep,
              state: StateDep) -> ProblemsAdded:
    """Add up to CURATOR_MAX_PROBLEMS_PER_REQUEST problems (413 beyond: send several
    requests). A problem whose `external_id` the bank holds is counted as a duplicate,
    not an error, and not changed; problems are embedded on the way in."""
    limit = state.settings.max_problems_per_request
    if len(body.problems) > limit:
        raise PayloadTooLarge(f"at most {limit} problems per request; send several requests",
                              {"count": len(body.problems), "limit": limit})
    records = [ProblemRecord(p.external_id, p.prompt, p.answer, p.metadata, p.embedding)
               for p in body.problems]

    def work():
        return ingest(session=session, session_factory=state.session_factory,
                      files=state.files, bank=bank, problems=records, device=state.device)

    result = await run_in_threadpool(work)  # IngestError, EmbedderError: 422 (api/errors.py)
    return ProblemsAdded(added=result.added, duplicates=result.duplicates,
                         problem_ids=result.problem_ids, size=result.size)


@router.post("/{bank_id}/index", summary="Rebuild a bank's FAISS index")
async def rebuild_index(bank: BankDep, state: StateDep) -> BankPublic:
    """Rebuild the bank's FAISS index from the embedding store (itself synced from the DB)."""

    def work() -> None:
        store = access.synced_store(state.files, state.session_factory, bank)
        state.files.index(bank.id).build(store)

    await run_in_threadpool(work)
    return bank_public(state, bank, with_index=True)
