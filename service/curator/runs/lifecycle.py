"""Creating a run, revoking its token and issuing a new one: the admin's side of runs.

Select and feedback have their modules here too; the routes only translate HTTP.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from curator.core.errors import Invalid, Missing
from curator.curation.strategies import STRATEGIES, StrategyError, build_strategy
from curator.db.models import Bank, Run
from curator.runs import tokens
from curator.runs.strategy_store import warm_start


@dataclass
class IssuedRun:
    """A run and its token, in clear text: shown once, stored only hashed."""

    run: Run
    token: str


def create_run(session: Session, *, bank_id: int, strategy: str, params: dict[str, Any],
               seed: int | None = None, name: str | None = None,
               init_from: int | None = None) -> IssuedRun:
    """A new run on `bank_id`; the strategy and its parameters are checked before
    anything is written. A seed is drawn when none is given (recorded: runs replay).
    `init_from`: start from that run's learned curator (see `_warm_source`)."""
    bank = session.get(Bank, bank_id)
    if bank is None:
        raise Missing(f"bank {bank_id} not found", {"bank_id": bank_id})
    source = None
    if init_from is not None:
        source = _warm_source(session, init_from, bank, strategy)
        params = {"dormant_steps": 0, **params}  # it starts from a trained curator
    seed = seed if seed is not None else secrets.randbits(31)
    try:
        build_strategy(strategy, dict(params), dim=bank.dim, seed=seed, device="cpu")
    except StrategyError as exc:
        raise StrategyError(str(exc), {"strategy": strategy, "params": params}) from exc
    run = Run(bank_id=bank.id, name=name, strategy=strategy, params=params, seed=seed,
              token_hash="", cursor=0, step=0, model_version=0,
              stats={} if source is None else {"init_from": source.id})
    session.add(run)
    session.flush()  # the id goes into the token
    if source is not None:
        warm_start(session, run, source, bank.dim)
    token, run.token_hash = tokens.new_run_token(run.id)
    session.commit()
    return IssuedRun(run, token)


def _warm_source(session: Session, run_id: int, bank: Bank, strategy: str) -> Run:
    """The run to start from: same strategy, and a bank with the same embedder and
    dimension (the curator reads embeddings; other ones would mean nothing to it)."""
    source = session.get(Run, run_id)
    if source is None:
        raise Missing(f"init_from: run {run_id} not found", {"init_from": run_id})
    src_bank = session.get(Bank, source.bank_id)
    if (src_bank.embedder, src_bank.dim) != (bank.embedder, bank.dim):
        raise Invalid(
            f"init_from: run {run_id}'s bank has embedder {src_bank.embedder!r}, dim "
            f"{src_bank.dim}; this bank has {bank.embedder!r}, dim {bank.dim}",
            {"init_from": run_id})
    if source.strategy != strategy:
        raise Invalid(f"init_from: run {run_id} is {source.strategy!r}, not {strategy!r}",
                      {"init_from": run_id})
    if not hasattr(STRATEGIES.get(strategy), "load_warm"):
        raise Invalid(f"init_from: a {strategy!r} run has no learned curator to start from",
                      {"init_from": run_id})
    return source


def revoke_token(session: Session, run_id: int) -> None:
    """The run's token stops working; the run and its data stay."""
    run = _run(session, run_id)
    run.revoked = True
    session.commit()


def rotate_token(session: Session, run_id: int) -> IssuedRun:
    """A new token for the run: the old one stops working at once, the curator's learned
    state, tickets and history stay. Also lifts a revocation."""
    run = _run(session, run_id)
    token, run.token_hash = tokens.new_run_token(run.id)
    run.revoked = False
    session.commit()
    return IssuedRun(run, token)


def _run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise Missing(f"run {run_id} not found", {"run_id": run_id})
    return run
