"""Is the curriculum paying off? The in-run control group and what it costs in rollouts.

Every batch holds "explore" items drawn uniformly from the same candidate pools as the
curator's items (curation/sampler.py), so within one run they are a control group: the
curator's items against them, step for step, on the same student. Per group of items:

* mean realised utility Û, share of zero-signal groups (all G rewards equal: no
  gradient for GRPO) and mean reward, each with a normal-approximation 95% interval;
* the curator − explore difference in mean Û with a Welch 95% interval;
* an estimate of the mean Û uniform selection would have had on the same pools
  (`uniform_on_pools`: the curator's items are known, the explore items are a uniform
  sample of the rest of each pool);
* compute: rollouts spent on zero-signal groups, and per group with signal.

Û is the per-step improvement the trainer reported, not final accuracy: a curator that
wins here picks problems that move the policy more per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curator.curation.types import Observation

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    mean: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class GroupSummary:
    """One source's items (curator or explore) in the window."""

    groups: int
    utility: Estimate
    zero_signal: Estimate  # share of groups whose rewards were all equal
    reward: Estimate
    rollouts: int  # rewards received
    zero_signal_rollouts: int  # of those, in groups without signal
    wasted_per_useful: float | None  # zero-signal rollouts per group with signal


def mean_interval(values: np.ndarray) -> Estimate:
    """Mean and normal-approximation 95% interval (None where undefined)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Estimate(None, None, None, 0)
    m = float(v.mean())
    if n == 1:
        return Estimate(m, None, None, 1)
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, m - half, m + half, n)


def difference(a: np.ndarray, b: np.ndarray) -> Estimate:
    """mean(a) − mean(b) with a Welch 95% interval."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return Estimate(None, None, None, int(min(a.size, b.size)))
    d = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return Estimate(d, d - Z95 * se, d + Z95 * se, int(a.size + b.size))


def uniform_on_pools(tickets: list[tuple[np.ndarray, np.ndarray, int]]) -> Estimate:
    """What uniform selection would have yielded on the same pools: the mean Û of a
    pool, estimated per ticket by stratification and averaged over tickets.

    A ticket's pool of M splits into the k problems the curator drew, whose Û the trainer
    reported, and the M − k others, of which the explore items are a uniform sample. So
    the pool's mean is (Σ curator Û + (M − k) · mean explore Û) / M — unbiased by design,
    with no model of the sampler. (Importance weights from the logged propensities were
    tried first: the propensity q(x) is not an item's inclusion probability in a batch
    drawn without replacement and topped up uniformly, and on a simulated run that
    estimate came out at a quarter of a uniform run's actual mean.) Each item is
    (curator Û [k], explore Û [n], M); tickets without explore items are skipped. The
    interval is from the explore samples' variance (pooled over the window).
    """
    rows = [(np.asarray(c, dtype=np.float64), np.asarray(e, dtype=np.float64), int(m))
            for c, e, m in tickets]
    rows = [(c[np.isfinite(c)], e[np.isfinite(e)], m, c.size) for c, e, m in rows]
    # a ticket needs explore items, and some curator feedback if it had curator items
    rows = [r for r in rows if r[1].size > 0 and r[2] > 0 and (r[3] == 0 or r[0].size > 0)]
    if not rows:
        return Estimate(None, None, None, 0)
    ests, weights = [], []
    for cur, exp_, m, k in rows:
        cur_sum = float(cur.mean()) * k if cur.size else 0.0  # unreported: their mean
        ests.append((cur_sum + (m - k) * float(exp_.mean())) / m)
        weights.append(((m - k) / m) ** 2 / exp_.size * (1.0 - exp_.size / max(m - k, 1)))
    est = float(np.mean(ests))
    pooled = np.concatenate([r[1] - r[1].mean() for r in rows])
    n_exp = sum(r[1].size for r in rows)
    if n_exp - len(rows) < 1:
        return Estimate(est, None, None, n_exp)
    var = float((pooled ** 2).sum()) / (n_exp - len(rows))
    se = math.sqrt(var * sum(weights)) / len(rows)
    return Estimate(est, est - Z95 * se, est + Z95 * se, n_exp)


def summarise(utility: np.ndarray, zero_signal: np.ndarray, reward: np.ndarray,
              rollouts: np.ndarray) -> GroupSummary:
    """One source's items. `zero_signal` is 1/0 per group (NaN: no rewards sent),
    `rollouts` the number of rewards per group (0: none sent)."""
    zs = np.asarray(zero_signal, dtype=np.float64)
    g = np.asarray(rollouts, dtype=np.int64)
    has = np.isfinite(zs)
    wasted = int(g[has & (zs == 1.0)].sum())
    useful = int((has & (zs == 0.0)).sum())
    return GroupSummary(
        groups=int(len(g)), utility=mean_interval(utility), zero_signal=mean_interval(zs),
        reward=mean_interval(reward), rollouts=int(g.sum()), zero_signal_rollouts=wasted,
        wasted_per_useful=(wasted / useful) if useful else None)


def control_sums(batch: list[Observation]) -> dict[str, float]:
    """Per source (curator | explore): count, sum and sum of squares of the reported
    utilities, kept with the history point so a dashboard can put a rolling interval
    on curator − explore over steps (the worker stores them in each point's extra)."""
    out: dict[str, float] = {}
    for source, key in (("curator", "cur"), ("explore", "exp")):
        u = np.array([o.utility for o in batch if o.source == source and o.utility is not None
                      and np.isfinite(o.utility)], dtype=np.float64)
        out |= {f"ctl_{key}_n": float(u.size), f"ctl_{key}_sum": float(u.sum()),
                f"ctl_{key}_sq": float((u * u).sum())}
        # groups whose rewards were all equal (mean |A| = 0: no GRPO signal), of those
        # reported with rewards: the dashboard's zero-signal share over steps
        a = [o.mean_abs_advantage for o in batch if o.source == source
             and o.mean_abs_advantage is not None and np.isfinite(o.mean_abs_advantage)]
        out |= {f"zs_{key}_n": float(len(a)), f"zs_{key}_zero": float(sum(x == 0 for x in a))}
    return out
