"""curation/step.py: the one home of a step (score, draw, observations)."""

from __future__ import annotations

import numpy as np
import pytest

from curator.curation import step
from curator.curation.strategies import build_strategy


def test_score_reads_embeddings_only_for_a_strategy_that_uses_them():
    positions = np.array([3, 1, 4, 5], dtype=np.int64)
    calls: list[np.ndarray] = []

    def embed(p: np.ndarray) -> np.ndarray:
        calls.append(p)
        return np.random.default_rng(0).normal(size=(p.size, 8)).astype(np.float32)

    uniform = build_strategy("uniform", None, dim=8, seed=0)
    assert step.score(uniform, positions, embed).shape == (4,)
    assert calls == []
    curator = build_strategy("actor_curator", None, dim=8, seed=0)
    logits = step.score(curator, positions, embed)
    assert logits.dtype == np.float64 and logits.shape == (4,)
    assert len(calls) == 1 and calls[0].tolist() == positions.tolist()


def test_a_seed_and_step_draw_the_same_batch_and_another_step_does_not():
    logits = np.random.default_rng(1).normal(size=64)
    kw = dict(seed=7, batch_size=8, pool_size=64, active=True, top_p=1.0, temperature=1.0,
              explore=0.25)
    a, b = step.draw(logits, step=3, **kw), step.draw(logits, step=3, **kw)
    assert a.indices.tolist() == b.indices.tolist() and a.sources == b.sources
    assert step.draw(logits, step=4, **kw).indices.tolist() != a.indices.tolist()


def _item(pid: int, source: str = "curator", utility: float | None = 0.5):
    return step.ReportedItem(problem_id=pid, logit=0.1 * pid, propensity=0.01,
                             source=source, utility=utility,
                             utility_kind="ratio" if utility is not None else None,
                             mean_reward=0.25, mean_abs_advantage=0.4)


def test_observations_keep_order_and_pair_row_i_with_item_i():
    items = [_item(5), _item(2, "explore"), _item(9, utility=None)]
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    obs = step.observations(items, emb, ["a", None, "c"])
    assert [o.problem_id for o in obs] == [5, 2, 9]
    assert [o.embedding.tolist() for o in obs] == [[0, 1], [2, 3], [4, 5]]
    assert [o.category for o in obs] == ["a", None, "c"]
    assert [o.source for o in obs] == ["curator", "explore", "curator"]
    assert obs[2].utility is None and obs[2].utility_kind is None
    assert obs[0].logit == pytest.approx(0.5) and obs[0].mean_abs_advantage == 0.4
    assert all(o.category is None for o in step.observations(items, emb))


def test_observations_refuse_misaligned_rows():
    items = [_item(1), _item(2)]
    with pytest.raises(ValueError, match="1 embeddings for 2 items"):
        step.observations(items, np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="3 categories for 2 items"):
        step.observations(items, np.zeros((2, 2), np.float32), ["a", "b", "c"])
