"""Bandit reward for the curator: realised policy improvement Û(x) (docs/design.md §4).

Û(x) = (1/G) Σ_i A_i·s_i with GRPO advantages A_i and the actor's length-normalised
probability ratio s_i; without ratios the fallback is mean |A_i|. Û is averaged over the
last H observations of the same problem, then scaled for the OSMD step.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from curator.curation.types import UtilityKind

ScalingMode = Literal["amplify", "standardize"]


def _rewards(rewards: np.ndarray | list[float]) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("rewards must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    return r


def grpo_advantages(rewards: np.ndarray | list[float], eps: float = 1e-6) -> np.ndarray:
    """A_i = (r_i − mean r) / (std r + eps) with the population std (ddof=0).

    ddof=0 matches the usual GRPO implementations' group normalisation and makes a
    single-rollout group well defined (A = 0). A group with equal rewards has A = 0.
    """
    r = _rewards(rewards)
    return (r - r.mean()) / (r.std() + eps)


def realised_improvement(
    rewards: np.ndarray | list[float], log_ratios: np.ndarray | list[float] | None = None
) -> tuple[float, UtilityKind]:
    """Û for one problem's group and how it was obtained (validated; see `summarise_group`).

    log_ratios[i] is the per-rollout, length-normalised mean of log π_new − log π_old;
    s_i = exp(log_ratios[i]) and Û = mean(A_i·s_i) (kind "ratio"). Without log-ratios
    Û = mean |A_i| (kind "abs_advantage"), a proxy that says where the group had signal.
    """
    r = _rewards(rewards)
    lr = None
    if log_ratios is not None:
        lr = np.asarray(log_ratios, dtype=np.float64)
        if lr.shape != r.shape:
            raise ValueError("log_ratios must have the same length as rewards")
        if not np.all(np.isfinite(lr)):
            raise ValueError("log_ratios must be finite")
        lr = lr.tolist()
    u, kind, _, _ = summarise_group(r.tolist(), lr)
    return u, kind


def group_stats(rewards: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean reward, mean |A_i|) of one group (validated; see `summarise_group`)."""
    _, _, mean, mean_abs = summarise_group(_rewards(rewards).tolist())
    return mean, mean_abs


def summarise_group(
    rewards: list[float], log_ratios: list[float] | None = None, eps: float = 1e-6
) -> tuple[float, UtilityKind, float, float]:
    """(Û, kind, mean reward, mean |A|) of one group, in plain Python: the one place the
    utility is computed.

    The feedback path calls it for every problem of a ticket, where numpy's per-call
    overhead on 8-element arrays costs more than the arithmetic. Callers validate.
    """
    g = len(rewards)
    if g == 0:
        raise ValueError("rewards must be a non-empty sequence")
    mean = math.fsum(rewards) / g
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / g)
    adv = [(r - mean) / (std + eps) for r in rewards]
    mean_abs = math.fsum(abs(a) for a in adv) / g
    if log_ratios is None:
        return mean_abs, "abs_advantage", mean, mean_abs
    if len(log_ratios) != g:
        raise ValueError("log_ratios must have the same length as rewards")
    u = math.fsum(a * math.exp(lr) for a, lr in zip(adv, log_ratios)) / g
    return u, "ratio", mean, mean_abs


class UtilityWindow:
    """Per-problem window of the last `horizon` utilities of a run, for at most
    `max_problems` problems (the least recently pushed one is forgotten beyond that, so
    the state and the checkpoint stay bounded on long runs over large banks).

    Values are kept in short python lists rather than deques: a run can touch hundreds
    of thousands of problems and an empty deque alone costs ~600 bytes.
    """

    def __init__(self, horizon: int = 10, max_problems: int = 32_768) -> None:
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        if max_problems < 1:
            raise ValueError("max_problems must be >= 1")
        self.horizon = horizon
        self.max_problems = max_problems
        self._values: dict[int, list[float]] = {}  # least recently pushed first

    def __len__(self) -> int:
        return len(self._values)

    def push(self, problem_id: int, value: float) -> float:
        """Record `value` for `problem_id`; return the mean of its window."""
        pid = int(problem_id)
        vals = self._values.pop(pid, None)
        if vals is None:
            vals = []
            while len(self._values) >= self.max_problems:
                del self._values[next(iter(self._values))]
        self._values[pid] = vals  # now the most recently pushed
        vals.append(float(value))
        if len(vals) > self.horizon:
            del vals[: len(vals) - self.horizon]
        return sum(vals) / len(vals)

    def mean(self, problem_id: int) -> float | None:
        vals = self._values.get(int(problem_id))
        return sum(vals) / len(vals) if vals else None

    def state_dict(self) -> dict[str, Any]:
        """Flat python lists (oldest value first per problem), cheap to pickle."""
        ids = list(self._values)
        return {
            "horizon": self.horizon,
            "ids": ids,
            "lengths": [len(self._values[i]) for i in ids],
            "values": [v for i in ids for v in self._values[i]],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids, lengths, values = state["ids"], state["lengths"], state["values"]
        if len(ids) != len(lengths) or sum(lengths) != len(values):
            raise ValueError("inconsistent utility window state")
        self.horizon = int(state["horizon"])
        self._values = {}
        pos = 0
        for pid, n in zip(ids, lengths, strict=True):
            self._values[int(pid)] = [float(v) for v in values[pos : pos + n]]
            pos += n


def scale(
    values: np.ndarray, mode: ScalingMode = "amplify", amplifier: float = 1000.0
) -> np.ndarray:
    """Turn windowed utilities into the OSMD loss weights.

    "amplify" (default) multiplies by a fixed factor (paper: 1000, the raw signal is
    tiny) and keeps the absolute level: a batch where nothing improved stays near zero
    and barely moves the curator. "standardize" ((u − mean)/(std + 1e-8) within the
    batch) discards that level and pushes half of any batch up; bench/curator_log.md found it
    markedly worse, so it is only an option.
    """
    u = np.asarray(values, dtype=np.float64)
    if mode == "amplify":
        return u * amplifier
    if mode == "standardize":
        if u.size == 0:
            return u.copy()
        return (u - u.mean()) / (u.std() + 1e-8)
    raise ValueError(f"unknown scaling mode {mode!r}")
