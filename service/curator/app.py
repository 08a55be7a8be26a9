"""create_app(settings): routers, error handlers, lifespan. Nothing is built at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from curator.api import openapi
from curator.api.errors import install_error_handlers
from curator.api.gate import AuthGate
from curator.api.limits import BodySizeLimit
from curator.api.routes import admin, banks, health, runs
from curator.api.schemas import ErrorResponse
from curator.bank.files import BankFiles
from curator.core.config import Settings
from curator.db.session import make_engine, make_session_factory
from curator.runs import strategy_store
from curator.selection.announcements import preload_versions
from curator.selection.prescore import SelectionHandover
from curator.selection.snapshots import SnapshotCache
from curator.state import AppState
from curator.worker.loop import run_worker
from curator.worker.queue import InProcessQueue, RedisStreamQueue
from curator.worker.updater import Updater

log = logging.getLogger("curator")


ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in [(400, "Bad request"), (401, "Missing or invalid token"),
                         (403, "Token not allowed here"), (404, "Unknown bank, run or ticket"),
                         (409, "Conflict"), (410, "Ticket expired"), (413, "Request too large"),
                         (422, "Invalid request"), (500, "Internal error")]
}


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def build_state(settings: Settings) -> AppState:
    from curator.curation.scorer import resolve_device

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin, _ = settings.ensure_admin_token()
    device = str(resolve_device(settings.device))
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    engine = make_engine(settings.sqlalchemy_url)
    session_factory = make_session_factory(engine)
    files = BankFiles(settings.data_dir)
    versions = None
    if settings.redis_url:
        queue = versions = RedisStreamQueue(settings.redis_url, settings.feedback_stream,
                                            settings.worker_group)
    else:
        queue = InProcessQueue()
    snapshots = SnapshotCache(session_factory, device, load=strategy_store.load_selection)
    updater = None
    if settings.embedded_worker:
        handover = SelectionHandover(snapshots, session_factory, files, device,
                                     copy=strategy_store.selection_copy)
        updater = Updater(session_factory, files, device,
                          max_attempts=settings.max_apply_attempts, handover=handover)
    return AppState(settings=settings, engine=engine, session_factory=session_factory,
                    files=files, snapshots=snapshots, queue=queue, versions=versions,
                    updater=updater, device=device,
                    admin_tokens=[admin, *settings.extra_admin_tokens])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings)
        app.state.curator = state
        if state.updater is not None:
            state.worker_task = asyncio.create_task(
                run_worker(state.queue, state.updater, state.stop,
                           session_factory=state.session_factory,
                           ticket_ttl_s=settings.ticket_ttl_s, versions=state.versions))
        preload = None
        if state.versions is not None:
            preload = asyncio.create_task(preload_versions(
                state.versions, state.snapshots, state.session_factory, state.files,
                state.stop))
        try:
            yield
        finally:
            state.stop.set()
            if preload is not None:
                preload.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await preload
            if state.worker_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await state.worker_task
            await state.queue.close()
            state.engine.dispose()

    # /docs and /redoc with Swagger UI and ReDoc served from the installed package
    # (fastapi-offline), not a CDN: they work on an offline cluster.
    app = FastAPIOffline(title="Curator", version="0.1.0", lifespan=lifespan,
                         summary="Curriculum-as-a-service for RL post-training (Actor-Curator)",
                         generate_unique_id_function=_operation_id,
                         redoc_url=None)  # ours (api/routes/admin.py): no CDN logo
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(banks.router, responses=ERROR_RESPONSES)
    app.include_router(runs.router, responses=ERROR_RESPONSES)
    app.include_router(admin.router, responses=ERROR_RESPONSES)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGate)  # outermost: an unauthenticated write reads no body
    openapi.install(app)
    return app
