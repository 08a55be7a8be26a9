"""The algorithm's step in one place: score a candidate pool, draw a batch from it.

The service's select and its scoring ahead (selection/), the admin distribution
(admin/views.py) and the simulator's direct engine (sim/direct.py) all score and draw
through these two functions, so a pool means the same logits and a (seed, step) the
same draw wherever it is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from curator.curation.sampler import Selection, sample
from curator.curation.types import Pool, Strategy


def score(strategy: Strategy, positions: np.ndarray,
          embed: Callable[[np.ndarray], np.ndarray],
          categories: Sequence[str | None] | None = None) -> np.ndarray:
    """The strategy's logits (float64) over the pool at `positions`. `embed(positions)`
    is called only if the strategy reads embeddings (else the pool carries [M, 0])."""
    positions = np.asarray(positions, dtype=np.int64)
    if strategy.uses_embeddings:
        embeddings = embed(positions)
    else:
        embeddings = np.zeros((positions.size, 0), dtype=np.float32)
    pool = Pool(problem_ids=positions, embeddings=embeddings, categories=categories)
    return np.asarray(strategy.logits(pool), dtype=np.float64)


def draw(logits: np.ndarray, *, seed: int, step: int, batch_size: int, pool_size: int,
         active: bool, top_p: float, temperature: float, explore: float) -> Selection:
    """Sample `batch_size` of the pool (docs/design.md, "Sampling"); the rng is keyed by
    (seed, step), so the same step draws the same problems wherever it is drawn."""
    rng = np.random.default_rng([seed, step])
    return sample(logits if active else None, batch_size, rng, pool_size=pool_size,
                  top_p=top_p, temperature=temperature, explore=explore)
