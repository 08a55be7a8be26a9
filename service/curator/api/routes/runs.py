"""Runs: create (admin), inspect, select and feedback (run token)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from curator.api.deps import (
    AdminDep,
    IdPath,
    RunAuthDep,
    SessionDep,
    StateDep,
    TokenDep,
    authorise_run_sync,
)
from curator.api.schemas import (
    FeedbackReceipt,
    FeedbackRequest,
    MetricSeries,
    MetricsIn,
    MetricsReceiptOut,
    Revoked,
    RunCreate,
    RunCreated,
    RunPublic,
    RunValue,
    SelectRequest,
    SelectResponse,
    TicketCounts,
)
from curator.db.models import Bank
from curator.runs import lifecycle
from curator.runs.export import parquet_chunks, record_batches, schema
from curator.runs.feedback import ResultRecord, record_feedback, run_snapshot
from curator.runs.metrics import metric_series, record_metrics
from curator.runs.selection import SelectLimits, select_batch
from curator.runs.value import value_report

router = APIRouter(prefix="/v1/runs", tags=["runs"])
log = logging.getLogger("curator.api")


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[AdminDep],
             summary="Create a run (admin): its strategy, parameters and token")
def create_run(body: RunCreate, session: SessionDep) -> RunCreated:
    """A run of `strategy` on a bank; `params` are checked against the strategy before
    anything is written. The answer carries the run's own token, shown only here: it
    can select and report feedback for this run and nothing else."""
    issued = lifecycle.create_run(session, bank_id=body.bank_id, strategy=body.strategy,
                                  params=body.params, seed=body.seed, name=body.name,
                                  init_from=body.init_from)
    return _created(issued)


def _created(issued: lifecycle.IssuedRun) -> RunCreated:
    run = issued.run
    return RunCreated(run_id=run.id, token=issued.token, bank_id=run.bank_id,
                      strategy=run.strategy, params=run.params, seed=run.seed, name=run.name)


@router.get("/{run_id}", summary="Get a run: step, model version, ticket counts")
def get_run(run: RunAuthDep, session: SessionDep) -> RunPublic:
    """The run's step, current model version, ticket counts (issued, partial, reported,
    applied, failed) and statistics (admin or the run's token)."""
    now, counts = run_snapshot(session, run.id)  # one consistent read of version + counts
    return RunPublic(run_id=run.id, bank_id=run.bank_id, name=run.name, strategy=run.strategy,
                     params=run.params, seed=run.seed, step=now.step,
                     model_version=now.model_version, revoked=run.revoked,
                     tickets=TicketCounts(**counts), stats=now.stats or {})


IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
    description=(
        "Any string of up to 64 visible ASCII characters, new for each select (the client "
        "sends a UUID). A select repeated with the same key returns the ticket the first "
        "one issued (answered with `Curator-Replayed: true`) instead of a new one, so a "
        "select whose answer was lost can be resent; the same key with another "
        "batch_size or pool_size is a 409."))]


@router.post("/{run_id}/select", response_model=SelectResponse,
             summary="Select a batch: the problems to train on next")
async def select(run_id: IdPath, body: SelectRequest, state: StateDep,
                 token: TokenDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Draw `batch_size` problems from a pool of `pool_size` candidates scored by the
    run's current curator, and record them as a ticket (logits and propensities kept
    for the update). Send the ticket's results to `feedback`."""
    cfg = state.settings
    limits = SelectLimits(max_batch_size=cfg.max_batch_size, max_pool_size=cfg.max_pool_size,
                          default_pool_size=cfg.default_pool_size)

    def work():
        # Authorise inside the same thread hop as the select (on the hot path each hop
        # through the thread pool costs as much as a database round trip); the use case
        # judges the sizes (runs/selection.py), after the token, as other routes do.
        with state.session_factory() as s:  # auth, bank and claim: one transaction
            run = authorise_run_sync(state, run_id, token, s)
            return select_batch(session=s, session_factory=state.session_factory, run=run,
                                bank=s.get(Bank, run.bank_id), batch_size=body.batch_size,
                                pool_size=body.pool_size, files=state.files,
                                snapshots=state.snapshots, idempotency_key=idempotency_key,
                                limits=limits)

    t0 = time.perf_counter()
    result = await run_in_threadpool(work)  # a SelectError is a 422 (api/errors.py)
    state.metrics.observe("select", time.perf_counter() - t0)
    # Spliced from pre-encoded problem JSON (bank/payloads.py): re-validating and
    # re-encoding 256 problems cost more than the rest of the select. The shape is
    # SelectResponse (declared for OpenAPI, checked by the schemathesis tests).
    response = Response(result.to_json(), media_type="application/json")
    if result.replayed:
        response.headers["Curator-Replayed"] = "true"
        state.metrics.inc("select_replays")
    else:
        state.metrics.inc("selected_problems", body.batch_size)
    return response


@router.post("/{run_id}/feedback", status_code=status.HTTP_202_ACCEPTED,
             summary="Report a ticket's results: rewards, log-ratios or utilities")
async def feedback(run: RunAuthDep, body: FeedbackRequest, state: StateDep,
                   response: Response) -> FeedbackReceipt:
    """Results for some or all of a ticket's problems; the ticket is applied once all of
    them have one (or now, with `final`). An exact repeat is a replay (`replayed`,
    header `Curator-Replayed`); a different result for a kept one is a 409."""
    results = [ResultRecord(r.problem_id, r.utility, r.rewards, r.log_ratios)
               for r in body.results]

    def work():
        strategy = state.snapshots.get(run, 0)
        return record_feedback(session_factory=state.session_factory, run=run,
                               ticket_id=body.ticket_id, results=results,
                               requires_rewards=strategy.requires_rewards,
                               ttl_s=state.settings.ticket_ttl_s, final=body.final)

    t0 = time.perf_counter()
    receipt = await run_in_threadpool(work)  # refusals map to HTTP in api/errors.py
    state.metrics.observe("feedback", time.perf_counter() - t0)
    if receipt.replayed:
        response.headers["Curator-Replayed"] = "true"
        state.metrics.inc("feedback_replays")
    else:
        state.metrics.inc("feedback_results", receipt.accepted)
    if receipt.state == "reported" and not receipt.replayed:
        try:
            await state.queue.put(receipt.ticket_id)
        except Exception:
            # The feedback is committed; a worker's sweep re-queues it from the database.
            log.warning("queue unavailable; ticket %s will be re-queued by the sweep",
                        receipt.ticket_id)
    return FeedbackReceipt(ticket_id=receipt.ticket_id, accepted=receipt.accepted,
                           state=receipt.state, replayed=receipt.replayed,
                           reported=receipt.reported, expected=receipt.expected)


@router.post("/{run_id}/metrics", summary="Report the trainer's own numbers for a step")
def post_metrics(run: RunAuthDep, body: MetricsIn, session: SessionDep) -> MetricsReceiptOut:
    """Eval accuracy, pass@k or any number the trainer measures, at one of its steps: the
    dashboard's comparison plots them beside reward. Kept once; the same number again is
    a replay, another value for a kept (step, name) a 409."""
    receipt = record_metrics(session, run.id, body.step, body.metrics)
    return MetricsReceiptOut(accepted=receipt.accepted, replayed=receipt.replayed)


@router.get("/{run_id}/metrics", summary="The trainer's reported numbers, per name")
def get_metrics(run: RunAuthDep, session: SessionDep) -> MetricSeries:
    """Every number reported with `POST …/metrics`, as series in step order."""
    return MetricSeries(metrics=metric_series(session, run.id))


@router.get("/{run_id}/value", summary="Is the curriculum paying off? (in-run control)")
def value(run: RunAuthDep, session: SessionDep,
          window: Annotated[int, Query(ge=0, le=100_000, description=(
              "the last N tickets with feedback; 0 for the whole run"))] = 50) -> RunValue:
    """Is the curriculum paying off? The curator's items against the explore items drawn
    uniformly from the same pools, in this run: utility, zero-signal share, reward,
    rollouts wasted, and an importance-weighted estimate of uniform selection."""
    return RunValue.model_validate(asdict(value_report(session, run.id, window)))


@router.get("/{run_id}/export", response_class=StreamingResponse,
            summary="Export the run's record as Parquet", responses={200: {
    "content": {"application/vnd.apache.parquet": {}},
    "description": "Parquet, one row per selected problem (runs/export.py)"}})
def export(run: RunAuthDep, state: StateDep,
           problems: Annotated[bool, Query(description=(
               "add each row's prompt, answer and metadata (JSON text) columns"))] = False,
           ) -> StreamingResponse:
    """The run's tickets, items (logit, propensity, source) and feedback as one Parquet
    file, streamed a row group at a time (admin or the run's own token)."""
    chunks = parquet_chunks(record_batches(state.session_factory, run.id, problems=problems),
                            schema(problems))
    return StreamingResponse(chunks, media_type="application/vnd.apache.parquet", headers={
        "Content-Disposition": f'attachment; filename="run-{run.id}.parquet"'})


@router.post("/{run_id}/revoke", dependencies=[AdminDep], summary="Revoke a run's token (admin)")
def revoke(run: RunAuthDep, session: SessionDep) -> Revoked:
    """Revoke the run's token (admin). The run and its data stay."""
    lifecycle.revoke_token(session, run.id)
    return Revoked(run_id=run.id, revoked=True)


@router.post("/{run_id}/token", dependencies=[AdminDep], status_code=status.HTTP_201_CREATED,
             summary="Rotate a run's token (admin)")
def rotate_token(run: RunAuthDep, session: SessionDep) -> RunCreated:
    """Issue a new token for the run (admin): the old one stops working at once, the
    curator's learned state, tickets and history stay. Also lifts a revocation."""
    return _created(lifecycle.rotate_token(session, run.id))
