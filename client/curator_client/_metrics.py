"""`curator/*` metrics: one flat dict of numbers that any logger takes (TRL's `log` and so
every `report_to` backend, verl's tracking, W&B, TensorBoard, MLflow, a print).

Two sources, so the curriculum can be read next to the loss curve:

* what this handle saw (no request): the last select's latency and curator/explore
  shares, the last feedback's latency, zero-signal share (groups whose rewards are all
  equal: no GRPO signal) and mean reward;
* what the service knows (`GET /v1/runs/{run}` and `/value`, the run's own token is
  enough): the model version, how many tickets wait to be applied, and the in-run
  control over the last `window` tickets — the curator's items against the explore
  items drawn uniformly from the same pools.

Utility is the service's Û of a problem, mean_i A_i·s_i over its rollouts (A_i the
group-normalised advantage, s_i the rollout's mean token log π_new − log π_old; with
rewards only, the mean |A_i| instead): the same unit as the admin views' "Û".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._models import RunInfo, Ticket


class RunMeter:
    """What a run handle saw of its own selects and feedback."""

    def __init__(self) -> None:
        self.selects = 0
        self.select_seconds: float | None = None
        self.batch_size: int | None = None
        self.curator_share: float | None = None
        self.feedbacks = 0
        self.feedback_seconds: float | None = None
        self.zero_signal_share: float | None = None
        self.mean_reward: float | None = None

    def selected(self, ticket: Ticket, seconds: float) -> None:
        self.selects += 1
        self.select_seconds = seconds
        n = len(ticket.problems)
        self.batch_size = n
        self.curator_share = (sum(p.source == "curator" for p in ticket.problems) / n
                              if n else None)

    def reported(self, results: Iterable[Mapping[str, Any]], seconds: float) -> None:
        self.feedbacks += 1
        self.feedback_seconds = seconds
        groups = [r["rewards"] for r in results if r.get("rewards")]
        if groups:
            self.zero_signal_share = sum(len(set(g)) == 1 for g in groups) / len(groups)
            flat = [x for g in groups for x in g]
            self.mean_reward = sum(flat) / len(flat)

    def flat(self) -> dict[str, float]:
        out = {"curator/selects": float(self.selects)}
        for key, value in (("select_seconds", self.select_seconds),
                           ("batch_size", self.batch_size),
                           ("curator_share", self.curator_share),
                           ("explore_share", None if self.curator_share is None
                            else 1.0 - self.curator_share),
                           ("feedback_seconds", self.feedback_seconds),
                           ("batch_zero_signal_share", self.zero_signal_share),
                           ("batch_mean_reward", self.mean_reward)):
            if value is not None:
                out[f"curator/{key}"] = float(value)
        return out


def service_metrics(info: RunInfo, value: Mapping[str, Any] | None) -> dict[str, float]:
    """The run's state and its in-run control report as `curator/*` numbers (a value the
    service cannot estimate yet, e.g. an interval over too few items, is left out)."""
    t = info.tickets
    out = {"curator/model_version": float(info.model_version),
           "curator/step": float(info.step),
           "curator/tickets_applied": float(t.applied),
           "curator/tickets_waiting": float(max(0, t.reported - t.applied - t.failed)),
           "curator/tickets_failed": float(t.failed)}
    if value:
        for source in ("curator", "explore"):
            part = value.get(source) or {}
            for key in ("utility", "zero_signal", "reward"):
                _put(out, f"curator/{source}_{key}", (part.get(key) or {}).get("mean"))
        _put(out, "curator/utility_difference", (value.get("difference") or {}).get("mean"))
        _put(out, "curator/uniform_utility_estimate",
             (value.get("uniform_estimate") or {}).get("mean"))
        _put(out, "curator/wasted_ratio", value.get("wasted_ratio"))
    return out


def _put(out: dict[str, float], key: str, value: Any) -> None:
    if isinstance(value, int | float) and math.isfinite(value):
        out[key] = float(value)
