"""Creating a run, revoking its token and issuing a new one: the admin's side of runs.

Select and feedback have their modules here too; the routes only translate HTTP.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from curator.curation.strategies import StrategyError, build_strategy
from curator.db.models import Bank, Run
from curator.errors import Missing
from curator.runs import tokens


@dataclass
class IssuedRun:
    """A run and its token, in clear text: shown once, stored only hashed."""

    run: Run
    token: str


def create_run(session: Session, *, bank_id: int, strategy: str, params: dict[str, Any],
               seed: int | None = None, name: str | None = None) -> IssuedRun:
    """A new run on `bank_id`; the strategy and its parameters are checked before
    anything is written. A seed is drawn when none is given (recorded: runs replay)."""
    bank = session.get(Bank, bank_id)
    if bank is None:
        raise Missing(f"bank {bank_id} not found", {"bank_id": bank_id})
    seed = seed if seed is not None else secrets.randbits(31)
    try:
        build_strategy(strategy, dict(params), dim=bank.dim, seed=seed, device="cpu")
    except StrategyError as exc:
        raise StrategyError(str(exc), {"strategy": strategy, "params": params}) from exc
    run = Run(bank_id=bank.id, name=name, strategy=strategy, params=params, seed=seed,
              token_hash="", cursor=0, step=0, model_version=0, stats={})
    session.add(run)
    session.flush()  # the id goes into the token
    token, run.token_hash = tokens.new_run_token(run.id)
    session.commit()
    return IssuedRun(run, token)


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
