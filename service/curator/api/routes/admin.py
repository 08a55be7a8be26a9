"""Admin views (admin token): run listing, distribution, history, comparison; the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from curator.admin import views
from curator.admin.page import asset, redoc_bundle
from curator.admin.schemas import (
    Comparison,
    DistributionPublic,
    HistoryPage,
    ProblemVisits,
    RunComparison,
    RunList,
)
from curator.api.deps import AdminDep, RunDep, SessionDep, StateDep
from curator.api.errors import InvalidRequest, NotFound
from curator.db.models import Bank, Run
from curator.runs.metrics import metric_series
from curator.state import AppState

router = APIRouter(tags=["admin"])

MAX_COMPARE = 8
By = Annotated[str | None, Query(min_length=1, max_length=200,
                                 description="metadata field to group by, e.g. difficulty")]
Sample = Annotated[int, Query(ge=1, le=50_000, description="problems scored (uniform sample)")]
Top = Annotated[int, Query(ge=0, le=200, description="top problems listed")]
Bins = Annotated[int, Query(ge=1, le=200, description="score histogram bins")]
MaxValues = Annotated[int, Query(ge=1, le=100, description="metadata values kept, rest (other)")]


def _distribution(state: AppState, session: Session, run: Run, *, sample: int,
                  by: str | None, top: int, bins: int) -> DistributionPublic:
    bank = session.get(Bank, run.bank_id)
    queue = views.queue_states(session=session, run_ids=[run.id])[run.id]
    return views.distribution(
        session=session, session_factory=state.session_factory, run=run, bank=bank,
        strategy=state.snapshots.get(run, run.model_version),
        files=state.files, queue=queue, sample=sample, by=by,
        top=top, bins=bins)


@router.get("/v1/runs", dependencies=[AdminDep], summary="List runs (admin)")
def list_runs(session: SessionDep) -> RunList:
    """Every run with its status, queue state and latest history point."""
    return RunList(runs=views.run_summaries(session=session))


@router.get("/v1/runs/{run_id}/distribution", dependencies=[AdminDep],
            summary="The curator's sampling distribution over the bank (admin)")
def distribution(run: RunDep, session: SessionDep, state: StateDep, by: By = None,
                 sample: Sample = 20_000, top: Top = 20, bins: Bins = 20) -> DistributionPublic:
    """The current curator's distribution over the bank (a fixed uniform sample if large)."""
    return _distribution(state, session, run, sample=sample, by=by, top=top, bins=bins)


@router.get("/v1/runs/{run_id}/history", dependencies=[AdminDep],
            summary="A run's per-step history (admin)")
def history(run: RunDep, session: SessionDep,
            after: Annotated[int | None, Query(ge=-1, le=2**31 - 1,
                                               description="steps after this")] = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000, by: By = None,
            max_values: MaxValues = 12) -> HistoryPage:
    """Per-step series recorded by the worker, paged forward by step."""
    return views.history(session=session, run=run, after=after, limit=limit, by=by,
                         max_values=max_values)


@router.get("/v1/runs/{run_id}/problems/{problem_id}", dependencies=[AdminDep],
            summary="One problem and each time the run selected it (admin)")
def problem(run: RunDep, session: SessionDep,
            problem_id: Annotated[int, Path(ge=0, le=2**62)],
            limit: Annotated[int, Query(ge=1, le=1000, description="newest visits")] = 200,
            ) -> ProblemVisits:
    """The dashboard's drill-down from the top-problems table: the problem, and per visit
    the step, model version, source, logit, propensity, Û and rewards."""
    out = views.problem_visits(session=session, run=run, problem_id=problem_id, limit=limit)
    if out is None:
        raise NotFound(f"problem {problem_id} not in run {run.id}'s bank",
                       {"problem_id": problem_id})
    return out


@router.get("/v1/compare", dependencies=[AdminDep], summary="Compare runs side by side (admin)")
def compare(session: SessionDep, state: StateDep,
            runs: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[0-9][0-9, ]*$",
                                       description="comma-separated run ids, e.g. 1,2,3")],
            by: By = None, sample: Sample = 20_000, top: Top = 10, bins: Bins = 20,
            points: Annotated[int, Query(ge=1, le=10_000, description="last history points")]
            = 500, max_values: MaxValues = 12) -> Comparison:
    """Several runs side by side: summary, distribution and recent history of each."""
    try:
        ids = list(dict.fromkeys(int(x) for x in runs.split(",") if x.strip()))
    except ValueError as exc:
        raise InvalidRequest("runs must be comma-separated run ids", {"runs": runs}) from exc
    if not ids or len(ids) > MAX_COMPARE or any(not 0 <= i <= 2**31 - 1 for i in ids):
        raise InvalidRequest(f"compare 1 to {MAX_COMPARE} runs", {"runs": runs})
    summaries = views.run_summaries(session=session, run_ids=ids)
    missing = sorted(set(ids) - {s.run_id for s in summaries})
    if missing:
        raise NotFound(f"run {missing[0]} not found", {"run_ids": missing})
    out = []
    for summary in summaries:
        run = session.get(Run, summary.run_id)
        out.append(RunComparison(
            run=summary,
            distribution=_distribution(state, session, run, sample=sample, by=by, top=top,
                                       bins=bins),
            history=views.history(session=session, run=run, limit=points, by=by,
                                  max_values=max_values, tail=True),
            metrics=metric_series(session, run.id, limit=points * 20)))
    return Comparison(by=by, runs=out)


@router.get("/admin", include_in_schema=False)
def dashboard() -> HTMLResponse:
    content, _ = asset("index.html")
    return HTMLResponse(content, headers={"Cache-Control": "no-cache"})


@router.get("/redoc", include_in_schema=False)
def redoc() -> HTMLResponse:
    """ReDoc, fully offline (the stock page's bundle fetches a logo from a CDN)."""
    from fastapi.openapi.docs import get_redoc_html

    return get_redoc_html(openapi_url="/openapi.json", title="Curator - ReDoc",
                          redoc_js_url="/admin/static/redoc.standalone.js",
                          redoc_favicon_url="/admin/static/favicon.svg",
                          with_google_fonts=False)


@router.get("/admin/static/redoc.standalone.js", include_in_schema=False)
def redoc_js() -> Response:
    return Response(redoc_bundle(), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/admin/static/{name}", include_in_schema=False)
def static_asset(name: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFound(f"no admin asset {name!r}", {"name": name})
    content, media = found
    return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})
