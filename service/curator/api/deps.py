"""Annotated dependencies: a route reads like a sentence."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from curator.api.errors import Forbidden, NotFound, Unauthorized
from curator.db.models import Bank, Run
from curator.runs import tokens
from curator.state import AppState


async def get_state(request: Request) -> AppState:
    return request.app.state.curator


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep):
    with state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def parse_bearer(authorization: str | None) -> str:
    """The token of an Authorization header; Unauthorized when it is missing or is not
    `Bearer <token>`. Shared by the route dependency and the auth gate (api/gate.py)."""
    if not authorization:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


async def bearer(authorization: Annotated[str | None, Header()] = None) -> str:
    return parse_bearer(authorization)


TokenDep = Annotated[str, Depends(bearer)]


def is_admin(state: AppState, token: str) -> bool:
    return any(tokens.same_secret(token, t) for t in state.admin_tokens)


async def require_admin(state: StateDep, token: TokenDep) -> None:
    if is_admin(state, token):
        return
    if tokens.token_run_id(token) is not None:
        raise Forbidden("run tokens cannot use admin endpoints")
    raise Unauthorized("invalid admin token")


AdminDep = Depends(require_admin)


# Ids in paths are INTEGER primary keys: larger values are refused (422), not queried.
IdPath = Annotated[int, Path(ge=0, le=2**31 - 1)]


def get_bank(bank_id: IdPath, session: SessionDep) -> Bank:
    bank = session.get(Bank, bank_id)
    if bank is None:
        raise NotFound(f"bank {bank_id} not found", {"bank_id": bank_id})
    return bank


BankDep = Annotated[Bank, Depends(get_bank)]


def get_run(run_id: IdPath, session: SessionDep) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found", {"run_id": run_id})
    return run


RunDep = Annotated[Run, Depends(get_run)]


def authorise_run_sync(state: AppState, run_id: int, token: str,
                       session: Session | None = None) -> Run:
    """The run, if `token` is the admin's or the run's own (unrevoked); read in
    `session` when given (the select reads and claims in one transaction)."""
    if session is None:
        with state.session_factory() as s:
            return authorise_run_sync(state, run_id, token, s)
    run = session.get(Run, run_id)
    if is_admin(state, token):
        if run is None:
            raise NotFound(f"run {run_id} not found", {"run_id": run_id})
        return run
    # A token that does not open this run gets the same answer whether the run exists
    # or not: run ids cannot be enumerated with a made-up token.
    if run is not None and tokens.matches(token, run.token_hash):
        if run.revoked:
            raise Unauthorized("this run's token was revoked")
        return run
    other = tokens.token_run_id(token)
    if other is not None and other != run_id:
        other_run = session.get(Run, other)
        if other_run is not None and tokens.matches(token, other_run.token_hash):
            raise Forbidden(f"this token belongs to run {other}, not run {run_id}")
    raise Unauthorized("invalid token for this run")


async def authorised_run(run_id: IdPath, state: StateDep, token: TokenDep) -> Run:
    """The run, if the bearer is the admin or this run's own (unrevoked) token.

    Async with one thread hop for the lookup: sync dependencies would each cost a trip
    through the thread pool on the select hot path.
    """
    return await run_in_threadpool(authorise_run_sync, state, run_id, token)


RunAuthDep = Annotated[Run, Depends(authorised_run)]
