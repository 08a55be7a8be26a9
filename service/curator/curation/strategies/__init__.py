"""Strategy registry: the curriculum rules a run can choose (`strategy` + `params`).

`build_strategy` is the one entry point for the service; every invalid choice raises
StrategyError (a ValueError) with a message naming the parameter and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curator.curation.strategies.actor_curator import ActorCuratorStrategy
from curator.curation.strategies.base import StrategyError, parse_params
from curator.curation.strategies.learnability import LearnabilityStrategy
from curator.curation.strategies.mopps import MoppsStrategy
from curator.curation.strategies.pcl import PclStrategy
from curator.curation.strategies.sec import SecStrategy
from curator.curation.strategies.uniform import UniformStrategy
from curator.curation.types import Strategy

STRATEGIES: dict[str, type] = {
    cls.name: cls
    for cls in (
        UniformStrategy,
        ActorCuratorStrategy,
        LearnabilityStrategy,
        SecStrategy,
        PclStrategy,
        MoppsStrategy,
    )
}


def validate_params(name: str, params: Mapping[str, Any] | None) -> Any:
    """The strategy's validated, frozen Params (defaults filled in)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return parse_params(cls.Params, params, name)


def build_strategy(
    name: str, params: Mapping[str, Any] | None, *, dim: int, seed: int, device: str = "cpu"
) -> Strategy:
    """Construct strategy `name` for embeddings of dimension `dim`.

    Deterministic given `seed`. `device` is a deployment setting (see
    scorer.resolve_device); a bad device raises a plain ValueError, not StrategyError.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    parsed = validate_params(name, params)
    return STRATEGIES[name](parsed, dim=dim, seed=seed, device=device)


__all__ = ["STRATEGIES", "StrategyError", "build_strategy", "validate_params"]
