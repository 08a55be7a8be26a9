"""Runs: create (admin), inspect, select and feedback (run token)."""

from __future__ import annotations

import logging
import secrets
import time

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool

from curator.api.deps import (
    AdminDep,
    IdPath,
    RunAuthDep,
    SessionDep,
    StateDep,
    TokenDep,
    authorise_run_sync,
)
from curator.api.errors import InvalidRequest, NotFound
from curator.api.schemas import (
    FeedbackReceipt,
    FeedbackRequest,
    RunCreate,
    RunCreated,
    RunPublic,
    SelectRequest,
    SelectResponse,
    TicketCounts,
)
from curator.curation.strategies import StrategyError, build_strategy
from curator.db.models import Bank, Run
from curator.runs import tokens
from curator.runs.feedback import ResultRecord, record_feedback, run_snapshot
from curator.runs.selection import select_batch

router = APIRouter(prefix="/v1/runs", tags=["runs"])
log = logging.getLogger("curator.api")


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[AdminDep])
def create_run(body: RunCreate, session: SessionDep, state: StateDep) -> RunCreated:
    bank = session.get(Bank, body.bank_id)
    if bank is None:
        raise NotFound(f"bank {body.bank_id} not found", {"bank_id": body.bank_id})
    seed = body.seed if body.seed is not None else secrets.randbits(31)
    try:  # validate the strategy and its parameters before anything is written
        build_strategy(body.strategy, dict(body.params), dim=bank.dim, seed=seed, device="cpu")
    except StrategyError as exc:
        raise InvalidRequest(str(exc), {"strategy": body.strategy, "params": body.params}) from exc
    run = Run(bank_id=bank.id, name=body.name, strategy=body.strategy, params=body.params,
              seed=seed, token_hash="", cursor=0, step=0, model_version=0, stats={})
    session.add(run)
    session.flush()
    token, token_hash = tokens.new_run_token(run.id)
    run.token_hash = token_hash
    session.commit()
    return RunCreated(run_id=run.id, token=token, bank_id=bank.id, strategy=run.strategy,
                      params=run.params, seed=seed, name=run.name)


@router.get("/{run_id}")
def get_run(run: RunAuthDep, session: SessionDep) -> RunPublic:
    now, counts = run_snapshot(session, run.id)  # one consistent read of version + counts
    return RunPublic(run_id=run.id, bank_id=run.bank_id, name=run.name, strategy=run.strategy,
                     params=run.params, seed=run.seed, step=now.step,
                     model_version=now.model_version, revoked=run.revoked,
                     tickets=TicketCounts(**counts), stats=now.stats or {})


@router.post("/{run_id}/select", response_model=SelectResponse)
async def select(run_id: IdPath, body: SelectRequest, state: StateDep,
                 token: TokenDep) -> Response:
    limits = state.settings
    pool_size = body.pool_size or max(limits.default_pool_size, body.batch_size)

    def work():
        # Authorise inside the same thread hop as the select (on the hot path each hop
        # through the thread pool costs as much as a database round trip), and before
        # judging the request's sizes, as the dependency-based routes do.
        with state.session_factory() as s:  # auth, bank and claim: one transaction
            run = authorise_run_sync(state, run_id, token, s)
            if body.batch_size > limits.max_batch_size:
                raise InvalidRequest(f"batch_size must be ≤ {limits.max_batch_size}",
                                     {"batch_size": body.batch_size})
            if pool_size > limits.max_pool_size:
                raise InvalidRequest(f"pool_size must be ≤ {limits.max_pool_size}",
                                     {"pool_size": pool_size})
            if body.pool_size is not None and body.batch_size > body.pool_size:
                raise InvalidRequest(
                    f"batch_size {body.batch_size} exceeds pool_size {body.pool_size}",
                    {"batch_size": body.batch_size, "pool_size": body.pool_size})
            bank = s.get(Bank, run.bank_id)
            return select_batch(session=s, session_factory=state.session_factory, run=run,
                                bank=bank, batch_size=body.batch_size, pool_size=pool_size,
                                files=state.files, snapshots=state.snapshots)

    t0 = time.perf_counter()
    result = await run_in_threadpool(work)  # a SelectError is a 422 (api/errors.py)
    state.metrics.observe("select", time.perf_counter() - t0)
    state.metrics.inc("selected_problems", body.batch_size)
    # Spliced from pre-encoded problem JSON (bank/payloads.py): re-validating and
    # re-encoding 256 problems cost more than the rest of the select. The shape is
    # SelectResponse (declared for OpenAPI, checked by the schemathesis tests).
    return Response(result.to_json(), media_type="application/json")


@router.post("/{run_id}/feedback", status_code=status.HTTP_202_ACCEPTED)
async def feedback(run: RunAuthDep, body: FeedbackRequest, state: StateDep,
                   response: Response) -> FeedbackReceipt:
    results = [ResultRecord(r.problem_id, r.utility, r.rewards, r.log_ratios)
               for r in body.results]

    def work():
        strategy = state.snapshots.get(run, 0)
        return record_feedback(session_factory=state.session_factory, run=run,
                               ticket_id=body.ticket_id, results=results,
                               requires_rewards=strategy.requires_rewards,
                               ttl_s=state.settings.ticket_ttl_s)

    t0 = time.perf_counter()
    receipt = await run_in_threadpool(work)  # refusals map to HTTP in api/errors.py
    state.metrics.observe("feedback", time.perf_counter() - t0)
    if receipt.replayed:
        response.headers["Curator-Replayed"] = "true"
        state.metrics.inc("feedback_replays")
    else:
        state.metrics.inc("feedback_results", receipt.accepted)
        try:
            await state.queue.put(receipt.ticket_id)
        except Exception:
            # The feedback is committed; a worker's sweep re-queues it from the database.
            log.warning("queue unavailable; ticket %s will be re-queued by the sweep",
                        receipt.ticket_id)
    return FeedbackReceipt(ticket_id=receipt.ticket_id, accepted=receipt.accepted,
                           state=receipt.state)


@router.post("/{run_id}/revoke", dependencies=[AdminDep])
def revoke(run: RunAuthDep, session: SessionDep) -> dict[str, object]:
    """Revoke the run's token (admin). The run and its data stay."""
    db_run = session.get(Run, run.id)
    db_run.revoked = True
    session.commit()
    return {"run_id": run.id, "revoked": True}


@router.post("/{run_id}/token", dependencies=[AdminDep], status_code=status.HTTP_201_CREATED)
def rotate_token(run: RunAuthDep, session: SessionDep) -> RunCreated:
    """Issue a new token for the run (admin): the old one stops working at once, the
    curator's learned state, tickets and history stay. Also lifts a revocation."""
    db_run = session.get(Run, run.id)
    token, token_hash = tokens.new_run_token(run.id)
    db_run.token_hash = token_hash
    db_run.revoked = False
    session.commit()
    return RunCreated(run_id=db_run.id, token=token, bank_id=db_run.bank_id,
                      strategy=db_run.strategy, params=db_run.params, seed=db_run.seed,
                      name=db_run.name)
