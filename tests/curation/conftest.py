"""Builders for curation tests."""

from __future__ import annotations

import numpy as np
import pytest

from curator.curation.types import Observation, Pool


def _make_obs(
    pid: int,
    emb: np.ndarray,
    *,
    logit: float = 0.0,
    utility: float | None = None,
    kind: str | None = "ratio",
    mean_reward: float | None = None,
    mean_abs_adv: float | None = None,
    category: str | None = None,
) -> Observation:
    return Observation(
        problem_id=pid,
        logit=logit,
        propensity=0.1,
        source="curator",
        embedding=np.asarray(emb, dtype=np.float32),
        category=category,
        utility=utility,
        utility_kind=kind if utility is not None else None,  # type: ignore[arg-type]
        mean_reward=mean_reward,
        mean_abs_advantage=mean_abs_adv,
    )


def _make_pool(ids: np.ndarray, emb: np.ndarray, categories: list | None = None) -> Pool:
    return Pool(
        problem_ids=np.asarray(ids, dtype=np.int64),
        embeddings=np.asarray(emb, dtype=np.float32),
        categories=categories,
    )


@pytest.fixture
def make_obs():  # noqa: ANN201
    """Factory for Observation (keyword defaults for everything but id and embedding)."""
    return _make_obs


@pytest.fixture
def make_pool():  # noqa: ANN201
    """Factory for Pool."""
    return _make_pool


@pytest.fixture
def clusters() -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated clusters in 16-d: embeddings [400, 16] and labels (1 = A)."""
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    centre *= 3.0 / np.linalg.norm(centre)
    labels = np.arange(400) % 2
    emb = np.where(labels[:, None] == 1, centre, -centre) + 0.3 * rng.normal(size=(400, 16))
    return emb.astype(np.float32), labels
