"""Checkpoints in two parts (strategy_store.py, migration 0005): selection reads only
what scoring needs, the worker reads both, and checkpoints written before 0005 (the
whole state in `blob`) are read by both."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from curator.curation.checkpoint import dumps, loads
from curator.curation.types import Observation, Pool
from curator.db.models import Bank, Checkpoint, Run
from curator.db.session import make_engine, make_session_factory
from curator.runs.strategy_store import (
    checkpoint_state,
    fresh_strategy,
    load_selection,
    load_strategy,
    write_checkpoint,
)

DIM = 8


def observations(rng: np.random.Generator, emb: np.ndarray, logits: np.ndarray
                 ) -> list[Observation]:
    return [Observation(problem_id=i, logit=float(logits[i]), propensity=1 / len(emb),
                        source="curator", embedding=emb[i], category=None,
                        utility=float(rng.normal() * 0.01), utility_kind="ratio",
                        mean_reward=float(rng.integers(0, 2)), mean_abs_advantage=0.5)
            for i in range(len(emb))]


@pytest.mark.parametrize("strategy", ["actor_curator", "pcl", "learnability"])
def test_selection_part_scores_as_the_whole(database_url, strategy):
    engine = make_engine(database_url)
    sf = make_session_factory(engine)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((64, DIM)).astype(np.float32)
    pool = Pool(problem_ids=np.arange(64), embeddings=emb)
    with sf() as s:
        s.execute(insert(Bank), [{"id": 1, "name": "b", "embedder": "provided", "dim": DIM,
                                  "size": 64}])
        run = Run(id=1, bank_id=1, strategy=strategy, params={"dormant_steps": 0}
                  if strategy == "actor_curator" else {}, seed=3, token_hash="x")
        s.add(run)
        s.commit()
        trained = fresh_strategy(run, DIM, "cpu")
        for version in (1, 2):
            trained.update(observations(rng, emb, trained.logits(pool)))
            write_checkpoint(s, run.id, version, trained)
        s.commit()

        whole, part = load_strategy(s, run, 2, DIM, "cpu"), load_selection(s, run, 2, DIM, "cpu")
        np.testing.assert_array_equal(part.logits(pool), trained.logits(pool))
        np.testing.assert_array_equal(whole.logits(pool), trained.logits(pool))
        assert part.active() == trained.active()
        # the worker's copy goes on exactly as the one that wrote the checkpoint
        batch = observations(np.random.default_rng(1), emb, trained.logits(pool))
        whole.update(batch)
        trained.update(batch)
        np.testing.assert_array_equal(whole.logits(pool), trained.logits(pool))

        row = s.execute(select(Checkpoint.selection, Checkpoint.blob)
                        .where(Checkpoint.run_id == 1, Checkpoint.version == 2)).one()
        training = trained.training_keys
        assert set(loads(row.blob)) == training
        assert not set(loads(row.selection)) & training
        assert checkpoint_state(s, 1, 2).keys() == trained.state_dict().keys()
        if strategy == "actor_curator":  # optimiser moments are most of it
            assert len(row.selection) < 0.7 * (len(row.selection) + len(row.blob))

        # a checkpoint written before 0005: the whole state in `blob`, no selection part
        s.execute(update(Checkpoint).where(Checkpoint.run_id == 1, Checkpoint.version == 1)
                  .values(selection=None, blob=dumps(trained.state_dict())))
        s.commit()
        for load in (load_strategy, load_selection):
            np.testing.assert_array_equal(load(s, run, 1, DIM, "cpu").logits(pool),
                                          trained.logits(pool))
        with pytest.raises(LookupError):
            load_selection(s, run, 7, DIM, "cpu")
    engine.dispose()
