"""Shared strategy plumbing: parameter parsing/validation and small helpers.

Parameters arrive as user JSON; every problem (unknown name, wrong type, out of range)
becomes a StrategyError naming the parameter, which the service maps to HTTP 422.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from curator.core.errors import Invalid
from curator.curation.types import Observation

P = TypeVar("P")


class StrategyError(Invalid):
    """Unknown strategy, or invalid strategy parameters."""


class StrategyBase:
    """The defaults of the Strategy protocol (curation/types.py). Every strategy derives
    from it, so the service reads each attribute directly rather than probing for it."""

    category_field: str | None = None  # metadata field the strategy reads
    requires_rewards: bool = False
    uses_embeddings: bool = True
    top_p: float = 1.0
    temperature: float = 1.0
    explore_share: float = 0.0  # share of a batch left to the uniform fill
    # state_dict keys only training reads (not stored in the checkpoint's selection part)
    training_keys: ClassVar[frozenset[str]] = frozenset()

    def selection_copy(self) -> StrategyBase | None:
        """An independent copy holding only what selection needs, or None: the caller
        then builds a fresh strategy and loads the whole state into it."""
        return None

    def load_selection_state(self, state: dict[str, Any]) -> None:
        """Load a checkpoint's selection part (by default the whole state)."""
        self.load_state_dict(state)


def require(ok: bool, name: str, why: str) -> None:
    """Raise StrategyError for parameter `name` unless `ok`."""
    if not ok:
        raise StrategyError(f"parameter {name!r} {why}")


def check_sampling(top_p: float, temperature: float) -> None:
    require(0.0 < top_p <= 1.0, "top_p", f"must be in (0, 1], got {top_p}")
    require(temperature > 0.0, "temperature", f"must be > 0, got {temperature}")


def _coerce(strategy: str, name: str, value: Any, hint: Any) -> Any:
    where = f"parameter {name!r} of strategy {strategy!r}"
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise StrategyError(f"{where} must be one of {list(allowed)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise StrategyError(f"{where} must be a boolean, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StrategyError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StrategyError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise StrategyError(f"{where} must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise StrategyError(f"{where} must be a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported parameter type {hint!r} for {name!r}")  # programming error


def parse_params(cls: type[P], raw: Mapping[str, Any] | None, strategy: str) -> P:
    """Build the frozen Params dataclass `cls` from user input, checking names and types,
    then run its `validate()`; missing names take their defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise StrategyError(f"params for strategy {strategy!r} must be an object")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise StrategyError(
            f"unknown parameter(s) {unknown} for strategy {strategy!r}; known: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(strategy, k, v, hints[k]) for k, v in raw.items()}
    params = cls(**values)
    params.validate()  # type: ignore[attr-defined]
    return params


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the finite, non-None values, or None when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def base_extra(batch: list[Observation], updates: int) -> dict[str, float]:
    """Stats every strategy reports: update count and mean raw utility when sent."""
    extra = {"updates": float(updates)}
    raw = mean_or_none(o.utility for o in batch)
    if raw is not None:
        extra["raw_utility"] = raw
    return extra


def check_state_name(state: Mapping[str, Any], name: str) -> None:
    if state.get("name") != name:
        raise ValueError(f"state is for strategy {state.get('name')!r}, not {name!r}")


def derive_seed(seed: int, salt: int) -> int:
    """A non-negative 63-bit seed for one random stream of a strategy instance."""
    return (int(seed) * 1_000_003 + salt * 7919 + 1) % (1 << 63)
