"""Select B of the M pool candidates: curator nucleus draws plus a uniform floor.

Implements docs/design.md §4 "Sampling": q = softmax(z / τ); the nucleus is the m top-ranked
candidates whose cumulative q mass is ≤ top_p; min(m, B) items are drawn from it by
multinomial on q without replacement, and the rest of B is filled uniformly from the
candidates not drawn (exploration floor). Every item carries its propensity and source
so runs are comparable and replayable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Slack for float error in the cumulative sum, so top_p = 1.0 keeps every candidate.
_CUM_TOL = 1e-12


@dataclass(frozen=True, eq=False)
class Selection:
    """The outcome of one `sample` call.

    indices: int64 [B], positions into the pool, curator draws first (in draw order).
    propensities: float64 [B], see `sample`.
    sources: "curator" or "explore" per item.
    pool_probs: float64 [M], q over the pool (uniform for a uniform selection).
    nucleus_size: m, the number of candidates the curator could draw from (0 if uniform).
    """

    indices: np.ndarray
    propensities: np.ndarray
    sources: list[str]
    pool_probs: np.ndarray
    nucleus_size: int = 0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax(z / τ) in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy in nats; zero-probability entries contribute nothing."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _uniform(pool_size: int, batch_size: int, rng: np.random.Generator) -> Selection:
    idx = rng.choice(pool_size, size=batch_size, replace=False).astype(np.int64)
    return Selection(
        indices=idx,
        propensities=np.full(batch_size, 1.0 / pool_size),
        sources=["explore"] * batch_size,
        pool_probs=np.full(pool_size, 1.0 / pool_size),
    )


def _checked(logits: np.ndarray | None, batch_size: int, pool_size: int | None,
             top_p: float, temperature: float,
             explore: float) -> tuple[np.ndarray | None, int]:
    """`sample`'s arguments validated: the logits as float64 (None: uniform) and M."""
    z = None
    if logits is None:
        if pool_size is None:
            raise ValueError("pool_size is required when logits is None")
        m_pool = int(pool_size)
    else:
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 1:
            raise ValueError("logits must be one-dimensional")
        if not np.all(np.isfinite(z)):
            raise ValueError("logits must be finite")
        m_pool = z.shape[0]
        if pool_size is not None and pool_size != m_pool:
            raise ValueError(f"pool_size {pool_size} does not match {m_pool} logits")
    if m_pool < 1:
        raise ValueError("the pool is empty")
    if not 1 <= batch_size <= m_pool:
        raise ValueError(f"batch_size must be in [1, {m_pool}], got {batch_size}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be in [0, 1], got {explore}")
    return z, m_pool


def sample(
    logits: np.ndarray | None,
    batch_size: int,
    rng: np.random.Generator,
    *,
    pool_size: int | None = None,
    top_p: float = 0.9,
    temperature: float = 1.0,
    explore: float = 0.0,
) -> Selection:
    """Choose `batch_size` distinct pool positions.

    logits None means a uniform selection (warm-up, or the uniform strategy); then
    `pool_size` gives M. Otherwise M = len(logits) (and `pool_size`, if given, must match).

    As the reference does, the nucleus only decides *how many* items the curator
    draws: m is the number of top-ranked candidates whose cumulative q mass is ≤ top_p
    (at least 1, never counting candidates whose q underflowed to 0), and the curator
    draws k = min(m, B − ⌈explore·B⌉) items by multinomial on the full-pool
    q = softmax(z/τ) without replacement. The other B − k items are drawn uniformly
    from the candidates not drawn ("explore": the exploration floor, and a control
    group drawn from the same pool). `explore` ∈ [0, 1] guarantees that share even when
    the nucleus is large.

    Propensity: q(x), the full-pool probability of the item under the distribution the
    curator sampled from — the same quantity for curator and explore items, so a run
    can be importance-weighted offline; 1/M for every item of a uniform selection.
    (Exact inclusion probabilities of B sequential draws without replacement have no
    closed form; q(x) is what the reference logs.)
    """
    z, m_pool = _checked(logits, batch_size, pool_size, top_p, temperature, explore)
    if z is None:
        return _uniform(m_pool, batch_size, rng)

    q = softmax(z, temperature)
    order = np.argsort(-q, kind="stable")
    cum = np.cumsum(q[order])
    m = int(np.count_nonzero(cum <= top_p + _CUM_TOL))
    support = int(np.count_nonzero(q > 0))
    m = max(1, min(m, support))

    # Gumbel-top-k: the k largest log q + Gumbel keys are a sequential multinomial draw
    # without replacement from q, in draw order.
    k = min(m, batch_size - int(np.ceil(explore * batch_size - 1e-9)), support)
    k = max(k, 0)
    with np.errstate(divide="ignore"):
        keys = np.log(q) + rng.gumbel(size=m_pool)
    cur_idx = np.argsort(-keys, kind="stable")[:k]

    n_fill = batch_size - k
    if n_fill:
        rest = np.setdiff1d(np.arange(m_pool), cur_idx, assume_unique=True)
        fill = rest[rng.choice(rest.size, size=n_fill, replace=False)]
        indices = np.concatenate([cur_idx, fill])
    else:
        indices = cur_idx
    return Selection(
        indices=indices.astype(np.int64),
        propensities=q[indices].astype(np.float64),
        sources=["curator"] * k + ["explore"] * n_fill,
        pool_probs=q,
        nucleus_size=m,
    )
