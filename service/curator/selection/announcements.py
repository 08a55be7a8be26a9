"""An API replica's side of version announcements from separate workers.

A separate worker announces each version it commits over Redis pub/sub, with the run's
next pool already scored (selection/prescore.py). The replica keeps that pool, and for runs
it serves draws the next batch from it at once, so the select that follows scores and
draws nothing. It does not load the model itself then: a select the prescored pool does
not fit loads the checkpoint's selection part inline (strategy_store.load_selection: no
optimiser state, ~9 ms for actor_curator). (Loading every version in the background made
each select that followed compete with a checkpoint load for the CPU.) Only an
announcement without scores makes the replica load and score the version ahead.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.orm import Session, sessionmaker

from curator.bank.files import BankFiles
from curator.core.versions import VersionChannel
from curator.db.models import Run
from curator.selection.prescore import draw_ahead, prescore_into
from curator.selection.prescored import Prescored
from curator.selection.snapshots import SnapshotCache

log = logging.getLogger("curator")


async def preload_versions(channel: VersionChannel, snapshots: SnapshotCache,
                           session_factory: sessionmaker[Session], files: BankFiles,
                           stop: asyncio.Event) -> None:
    """Take the versions separate workers announce until `stop` (see the module doc)."""

    def load(run_id: int, version: int) -> None:
        try:
            with session_factory() as s:
                run = s.get(Run, run_id)
            if run is not None:
                strategy = snapshots.get(run, version)
                prescore_into(snapshots, strategy, version, run_id, session_factory, files)
        finally:
            snapshots.delivered(run_id, version)

    snapshots.announced = True
    while not stop.is_set():
        try:
            async for run_id, version, payload in channel.versions():
                if snapshots.scored_version(run_id) == version:
                    continue  # this process applied it (an embedded worker) or has it
                scores = None
                if payload:
                    try:
                        scores = Prescored.decode(payload)
                    except (ValueError, KeyError, TypeError):
                        log.warning("unreadable prescored pool for run %d v%d", run_id,
                                    version)
                if scores is not None:
                    snapshots.put_scores(run_id, scores)
                    batch = snapshots.last_batch_size(run_id)
                    if batch is not None:  # a run this replica serves: draw ahead too
                        drawn = await asyncio.to_thread(draw_ahead, scores, run_id, batch,
                                                        session_factory, files)
                        snapshots.replace_scores(run_id, scores, drawn)
                elif snapshots.cached_version(run_id) is not None:  # a run we serve
                    snapshots.expect(run_id, version)  # its selects wait for this load
                    await asyncio.to_thread(load, run_id, version)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("version announcements unavailable; retrying in 2 s")
            await asyncio.sleep(2.0)
