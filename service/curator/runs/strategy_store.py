"""A run's strategy as stored: built from the run, loaded from a checkpoint, written to one.

The API (selection copies, selection/snapshots.py) and the worker (training copies,
worker/updater.py) both go through these, so a version means the same bytes to both.

A checkpoint is stored in two parts: `selection`, what scoring reads (for actor_curator
the scorer, the pass-rate head and the run statistics), and `blob`, what only training
reads (the strategy's `training_keys`: optimiser moments, utility window, minibatch
generator). The worker loads both; an API process loads a new version from `selection`
alone, 40% of the bytes for actor_curator, and builds no optimiser state from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from curator.core.errors import Invalid
from curator.curation.checkpoint import dumps, loads, non_finite_keys
from curator.curation.strategies import build_strategy
from curator.curation.types import Strategy
from curator.db.models import Checkpoint, Run

KEEP_CHECKPOINTS = 5  # per run: the newest five versions


class NonFiniteState(ValueError):
    """A strategy's state holds NaN or infinity: it is never stored (every later select
    of the run would fail on it)."""

    def __init__(self, run_id: int, version: int, keys: list[str]) -> None:
        super().__init__(f"run {run_id} v{version}: non-finite values in the strategy's "
                         f"state ({', '.join(keys[:5])}{', …' if len(keys) > 5 else ''})")
        self.keys = keys


def fresh_strategy(run: Run, dim: int, device: str) -> Strategy:
    """The run's strategy at version 0 (initialised from the run's seed)."""
    return build_strategy(run.strategy, dict(run.params), dim=dim, seed=run.seed, device=device)


def selection_copy(strategy: Strategy, run: Run, dim: int, device: str) -> Strategy:
    """An independent copy of `strategy` for selection (the worker goes on training the
    original): a fresh build loaded with its state, as a checkpoint load would be, without
    the serialisation."""
    own = strategy.selection_copy()
    if own is not None:  # a strategy that knows what selection needs copies only that
        return own
    copy = fresh_strategy(run, dim, device)
    copy.load_state_dict(strategy.state_dict())
    return copy


def load_strategy(session: Session, run: Run, version: int, dim: int, device: str) -> Strategy:
    """The strategy as of `version`, whole (the worker's training copy). Version 0 is the
    run's seed-initialised strategy, or, for a warm-started run, the checkpoint its
    creation wrote (`warm_start`)."""
    return _loaded(run, version, dim, device, checkpoint_state(session, run.id, version),
                   selection=False)


def load_selection(session: Session, run: Run, version: int, dim: int,
                   device: str) -> Strategy:
    """The strategy as of `version`, for selection only: reads the checkpoint's
    selection part (the whole state for checkpoints written before it had one)."""
    blob = session.scalar(select(func.coalesce(Checkpoint.selection, Checkpoint.blob))
                          .where(Checkpoint.run_id == run.id, Checkpoint.version == version))
    return _loaded(run, version, dim, device, None if blob is None else loads(blob),
                   selection=True)


def checkpoint_state(session: Session, run_id: int, version: int) -> dict[str, Any] | None:
    """The whole stored state of `version` (both parts), or None without a checkpoint."""
    row = session.execute(select(Checkpoint.selection, Checkpoint.blob).where(
        Checkpoint.run_id == run_id, Checkpoint.version == version)).first()
    if row is None:
        return None
    selection, rest = row
    return loads(rest) if selection is None else loads(selection) | loads(rest)


def _loaded(run: Run, version: int, dim: int, device: str, state: dict[str, Any] | None,
            *, selection: bool) -> Strategy:
    """A fresh build of the run's strategy with `state` loaded (as a selection part with
    `selection`: `load_selection_state`, whole by default); no state is the
    seed-initialised version 0 only."""
    strategy = fresh_strategy(run, dim, device)
    if state is not None:
        (strategy.load_selection_state if selection else strategy.load_state_dict)(state)
    elif version > 0:
        raise LookupError(f"run {run.id} has no checkpoint for version {version}")
    return strategy


def _checkpoint(run_id: int, version: int, strategy: Strategy) -> Checkpoint:
    """`strategy`'s state as a two-part checkpoint row (see the module doc)."""
    state = strategy.state_dict()
    bad = non_finite_keys(state)
    if bad:
        raise NonFiniteState(run_id, version, bad)
    training = strategy.training_keys
    return Checkpoint(run_id=run_id, version=version,
                      selection=dumps({k: v for k, v in state.items() if k not in training}),
                      blob=dumps({k: v for k, v in state.items() if k in training}))


def warm_start(session: Session, run: Run, source: Run, dim: int) -> None:
    """Write `run`'s version 0: its own fresh strategy with `source`'s learned curator
    (the strategy's `warm_state`) loaded in. The strategy must have one (`load_warm`:
    runs/lifecycle.py checks); StrategyError when the two do not fit."""
    target = fresh_strategy(run, dim, "cpu")
    try:
        donor = load_strategy(session, source, source.model_version, dim, "cpu")
    except Exception as exc:  # a missing or unreadable checkpoint: nothing to start from
        raise Invalid(f"init_from: run {source.id}'s curator (v{source.model_version}) "
                      f"cannot be read ({type(exc).__name__}: {exc}); start from another run",
                      {"init_from": source.id}) from exc
    warm = donor.warm_state()
    bad = non_finite_keys(warm)
    if bad:
        raise Invalid(f"init_from: run {source.id}'s curator (v{source.model_version}) holds "
                      f"non-finite values ({', '.join(bad[:5])}); start from another run",
                      {"init_from": source.id, "keys": bad[:20]})
    target.load_warm(warm)
    session.add(_checkpoint(run.id, 0, target))


def write_checkpoint(session: Session, run_id: int, version: int, strategy: Strategy) -> None:
    """Add `version`'s checkpoint to the session's transaction and drop the ones older
    than the newest KEEP_CHECKPOINTS (bounded in count; each is bounded in size)."""
    session.add(_checkpoint(run_id, version, strategy))
    session.execute(delete(Checkpoint).where(
        Checkpoint.run_id == run_id, Checkpoint.version <= version - KEEP_CHECKPOINTS))
