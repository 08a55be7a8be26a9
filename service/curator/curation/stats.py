"""Per-run running statistics of problems and regions, as extra scorer inputs.

Why: a scorer that reads only the embedding has to relearn, from a lagging reward,
that a region it liked has been mastered. With the student's recent outcomes around a
problem as inputs — its region's recent pass rate, share of groups without signal and
realised utility, and the problem's own record — the mapping "what a problem that
looks like this teaches now" is much closer to stationary: a mastered region's inputs
change the moment its groups start coming back all-correct, before any gradient step.

Regions are the Voronoi cells of `n_regions` centroids taken from the first observed
batch (a uniform sample of the bank, since the first updates come from the uniform
warm-up) and then fixed, so a region's statistics keep their meaning over the run.
Region sums decay by 2^(−1/half_life) per update (recency-weighted windows); a
problem's own record is an exponential moving average over its visits.

Per-problem records live in fixed arrays of `capacity` slots (the least recently seen
problem gives up its slot when a new one needs it), so memory, the checkpoint written
after every update and the time to copy or load the state stay bounded however long the
run and however large the bank: 32,768 slots are 1 MB. A problem that lost its slot reads
as unseen again.

Everything is plain numpy and part of the strategy's state (the API's selection copy
is loaded from the checkpoint, so what `features` reads must be in `state_dict`).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from curator.curation.types import Observation

# Inputs appended to the embedding, in this order.
FEATURE_NAMES = (
    "region_pass_rate",  # shrunk toward 0.5 by a prior of PRIOR_WEIGHT observations
    "region_no_signal",  # share of groups with all-equal rewards (prior 0.5)
    "region_utility",  # recent mean utility of the region / the run's mean |utility|
    "region_evidence",  # log1p(decayed count) / log1p(100)
    "seen",  # 1 when this problem was selected before in the run
    "problem_pass_rate",  # its own EMA pass rate (0.5 when unseen)
    "problem_no_signal",  # its own EMA no-signal indicator (0.5 when unseen)
    "staleness",  # log1p(updates since last seen) / log1p(1000); 1 when unseen
    "problem_utility",  # its own EMA utility / the run's mean |utility| (0 when unseen)
)
N_FEATURES = len(FEATURE_NAMES)
PRIOR_WEIGHT = 2.0
EVIDENCE_SCALE = math.log1p(100.0)
STALENESS_SCALE = math.log1p(1000.0)
PROBLEM_CAPACITY = 32_768
SLOW_FACTOR = 4.0  # the slow window's half-life, in units of the statistics' half-life
# columns of a problem's record
PASS, NO_SIGNAL, LAST, UTILITY = range(4)


class RunStats:
    """Region and problem statistics of one run; see the module doc."""

    def __init__(self, dim: int, n_regions: int = 32, half_life: float = 10.0,
                 problem_ema: float = 0.5, capacity: int = PROBLEM_CAPACITY) -> None:
        if n_regions < 1 or half_life <= 0 or not 0 < problem_ema <= 1 or capacity < 1:
            raise ValueError("n_regions >= 1, half_life > 0, problem_ema in (0, 1], "
                             "capacity >= 1")
        self.dim = dim
        self.n_regions = n_regions
        self.decay = 0.5 ** (1.0 / half_life)
        self.problem_ema = problem_ema
        self.centroids = np.zeros((0, dim), dtype=np.float32)
        # decayed sums per region: count, reward count, reward sum, no-signal, utility
        self.sums = np.zeros((n_regions, 5))
        # the same reward count and sum at a 4× longer half-life: the region's pass rate
        # now against its pass rate over a longer past is its learning progress
        self.slow_decay = 0.5 ** (1.0 / (SLOW_FACTOR * half_life))
        self.slow = np.zeros((n_regions, 2))
        self.abs_utility = 0.0  # decayed mean |utility| (normaliser)
        self.updates = 0
        # per slot: problem id (-1: free) and [pass EMA, no-signal EMA, last update
        # index, utility EMA]; `_slot` maps a problem id to its slot
        self.capacity = capacity
        self._ids = np.full(capacity, -1, dtype=np.int64)
        self._vals = np.zeros((capacity, 4), dtype=np.float64)
        self._slot: dict[int, int] = {}

    def record(self, problem_id: int) -> np.ndarray | None:
        """The problem's [pass EMA, no-signal EMA, last update, utility EMA], or None when
        the run has not seen it (or it lost its slot). A view: do not modify."""
        slot = self._slot.get(int(problem_id))
        return None if slot is None else self._vals[slot]

    def __len__(self) -> int:
        return len(self._slot)

    # -- reading ---------------------------------------------------------------------

    def regions(self, embeddings: np.ndarray) -> np.ndarray:
        """Nearest centroid per row (all zeros before the first update)."""
        if len(self.centroids) == 0 or len(embeddings) == 0:
            return np.zeros(len(embeddings), dtype=np.int64)
        e = np.asarray(embeddings, dtype=np.float32)
        d = (self.centroids * self.centroids).sum(1)[None, :] - 2.0 * (e @ self.centroids.T)
        return np.argmin(d, axis=1).astype(np.int64)

    def region_trend(self, embeddings: np.ndarray) -> np.ndarray:
        """Per row, its region's recent pass rate minus its pass rate over the slow
        window (both shrunk toward 0.5 by PRIOR_WEIGHT groups): > 0 where the student is
        getting better, ≈ 0 where it is not moving — a mastered region, or one whose
        reward does not depend on the answer (coin flips) however much it is trained."""
        if len(self.centroids) == 0:
            return np.zeros(len(embeddings))
        reg = self.regions(embeddings)
        fast = (self.sums[reg, 2] + 0.5 * PRIOR_WEIGHT) / (self.sums[reg, 1] + PRIOR_WEIGHT)
        slow = (self.slow[reg, 1] + 0.5 * PRIOR_WEIGHT) / (self.slow[reg, 0] + PRIOR_WEIGHT)
        return fast - slow

    def features(self, problem_ids: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """float32 [M, N_FEATURES] for a pool (see FEATURE_NAMES)."""
        m = len(problem_ids)
        out = np.empty((m, N_FEATURES), dtype=np.float32)
        reg = self.regions(embeddings)
        cnt, rcnt, rsum, nosig, util = (self.sums[reg, j] for j in range(5))
        out[:, 0] = (rsum + 0.5 * PRIOR_WEIGHT) / (rcnt + PRIOR_WEIGHT)
        out[:, 1] = (nosig + 0.5 * PRIOR_WEIGHT) / (rcnt + PRIOR_WEIGHT)
        norm = self.abs_utility if self.abs_utility > 0 else 1.0
        out[:, 2] = np.clip(util / np.maximum(cnt, 1e-9) / norm, -5.0, 5.0) * (cnt > 0)
        out[:, 3] = np.log1p(cnt) / EVIDENCE_SCALE
        out[:, 4:] = (0.0, 0.5, 0.5, 1.0, 0.0)  # unseen
        get = self._slot.get
        slots = [get(pid, -1) for pid in problem_ids.tolist()]
        rows = np.array([r for r, sl in enumerate(slots) if sl >= 0], dtype=np.int64)
        if rows.size:
            rec = self._vals[np.array([sl for sl in slots if sl >= 0], dtype=np.int64)]
            out[rows, 4] = 1.0
            out[rows, 5] = rec[:, PASS]
            out[rows, 6] = rec[:, NO_SIGNAL]
            out[rows, 7] = np.log1p(self.updates - rec[:, LAST]) / STALENESS_SCALE
            out[rows, 8] = np.clip(rec[:, UTILITY] / norm, -5.0, 5.0)
        return out

    def _allocate(self, new_ids: list[int], keep: set[int]) -> None:
        """Give each of `new_ids` a slot: free slots first, then the least recently seen
        problems' (never one of `keep`, the batch being folded in)."""
        used = len(self._slot)
        free = max(0, self.capacity - used)
        slots = list(range(used, used + min(free, len(new_ids))))
        short = len(new_ids) - len(slots)
        if short > 0:  # every slot is taken: 0..used-1
            last = self._vals[:used, LAST].copy()
            for pid in keep:
                sl = self._slot.get(pid)
                if sl is not None:
                    last[sl] = np.inf
            short = min(short, int(np.isfinite(last).sum()))
            victims = np.argpartition(last, short - 1)[:short] if short > 0 else []
            for sl in np.asarray(victims, dtype=np.int64).tolist():
                del self._slot[int(self._ids[sl])]
                slots.append(sl)
        for pid, sl in zip(new_ids, slots):  # beyond capacity within one batch: unrecorded
            self._ids[sl] = pid
            self._vals[sl] = (0.0, 0.0, -1.0, 0.0)
            self._slot[pid] = sl

    # -- learning --------------------------------------------------------------------

    def push(self, batch: list[Observation], utilities: np.ndarray | None = None) -> None:
        """Fold one applied batch in. `utilities` (aligned with batch, NaN = none)
        default to each observation's raw utility."""
        if not batch:
            return
        emb = np.stack([np.asarray(o.embedding, dtype=np.float32) for o in batch])
        if len(self.centroids) == 0:
            take = np.unique(emb, axis=0, return_index=True)[1]
            self.centroids = emb[np.sort(take)[: self.n_regions]].copy()
            if len(self.centroids) < self.n_regions:  # fewer distinct points than regions
                self.sums = self.sums[: len(self.centroids)]
                self.slow = self.slow[: len(self.centroids)]
        reg = self.regions(emb)
        self.sums *= self.decay
        self.slow *= self.slow_decay
        if utilities is None:
            utilities = np.array([np.nan if o.utility is None else o.utility for o in batch])
        u_sum, u_n = 0.0, 0.0
        a = self.problem_ema
        batch_ids = [int(o.problem_id) for o in batch]
        fresh = list(dict.fromkeys(p for p in batch_ids if p not in self._slot))
        if fresh:
            self._allocate(fresh, set(batch_ids))
        vals = self._vals
        for o, r, u in zip(batch, reg.tolist(), np.asarray(utilities, dtype=np.float64)):
            row = self.sums[r]
            if math.isfinite(u):
                row[0] += 1.0
                row[4] += u
                u_sum += abs(u)
                u_n += 1.0
            has_reward = o.mean_reward is not None and math.isfinite(o.mean_reward)
            reward = float(o.mean_reward) if has_reward else 0.5  # type: ignore[arg-type]
            no_signal = 1.0 if (o.mean_abs_advantage or 0.0) == 0.0 else 0.0
            if has_reward:
                row[1] += 1.0
                row[2] += reward
                row[3] += no_signal
                self.slow[r] += (1.0, reward)
            else:
                no_signal = 0.5
            util_v = float(u) if math.isfinite(u) else 0.0
            sl = self._slot.get(int(o.problem_id))
            if sl is None:  # more new problems in one batch than slots
                continue
            rec = vals[sl]
            if rec[LAST] < 0:  # first visit (slots are reset to LAST = -1 when taken)
                rec[:] = (reward, no_signal, float(self.updates), util_v)
            else:
                rec[PASS] += a * (reward - rec[PASS])
                rec[NO_SIGNAL] += a * (no_signal - rec[NO_SIGNAL])
                rec[LAST] = float(self.updates)
                rec[UTILITY] += a * (util_v - rec[UTILITY])
        if u_n:  # running normaliser: recency-weighted mean of |u| per update
            m = u_sum / u_n
            self.abs_utility = (m if self.abs_utility == 0.0
                                else self.decay * self.abs_utility + (1.0 - self.decay) * m)
        self.updates += 1

    # -- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        used = len(self._slot)  # slots are filled in order and never freed: 0..used-1
        return {
            "n_regions": int(self.n_regions), "decay": float(self.decay),
            "problem_ema": float(self.problem_ema),
            "centroids": self.centroids.copy(), "sums": self.sums.copy(),
            "slow": self.slow.copy(), "slow_decay": float(self.slow_decay),
            "abs_utility": float(self.abs_utility), "updates": int(self.updates),
            "capacity": int(self.capacity),
            "problem_ids": self._ids[:used].copy(),
            "problem_values": self._vals[:used].copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_regions = int(state["n_regions"])
        self.decay = float(state["decay"])
        self.problem_ema = float(state["problem_ema"])
        self.centroids = np.asarray(state["centroids"], dtype=np.float32).copy()
        self.sums = np.asarray(state["sums"], dtype=np.float64).copy()
        # states written before the slow window start it empty (its trend reads 0 at first)
        self.slow = (np.asarray(state["slow"], dtype=np.float64).copy() if "slow" in state
                     else np.zeros((len(self.sums), 2)))
        self.slow_decay = float(state.get("slow_decay", self.decay ** (1.0 / SLOW_FACTOR)))
        self.abs_utility = float(state["abs_utility"])
        self.updates = int(state["updates"])
        ids = np.asarray(state["problem_ids"], dtype=np.int64)
        vals = np.asarray(state["problem_values"], dtype=np.float64).reshape(len(ids), 4)
        self.capacity = max(int(state.get("capacity", PROBLEM_CAPACITY)), len(ids))
        self._ids = np.full(self.capacity, -1, dtype=np.int64)
        self._vals = np.zeros((self.capacity, 4), dtype=np.float64)
        self._ids[:len(ids)] = ids
        self._vals[:len(ids)] = vals
        self._slot = {int(p): i for i, p in enumerate(ids.tolist())}


# Inputs from a declared metadata field (`field` of actor_curator / pcl), in this order.
CATEGORY_FEATURE_NAMES = (
    "category_pass_rate",  # recency-weighted, shrunk toward 0.5 by PRIOR_WEIGHT groups
    "category_no_signal",  # share of its groups with all-equal rewards (prior 0.5)
    "category_utility",  # recent mean utility / the run's mean |utility|
    "category_evidence",  # log1p(decayed count) / log1p(100)
    "category_value",  # the value as a number, scaled by the run's running range; 0 if not
    "category_is_number",  # 1 when the value parses as a finite number
)
N_CATEGORY_FEATURES = len(CATEGORY_FEATURE_NAMES)
MAX_CATEGORIES = 1024  # beyond: later values share the statistics of a hashed slot


class CategoryStats:
    """Recency-weighted statistics per value of one metadata field (a dataset's level,
    type or source), so a learned curator gets the same label `sec` reads.

    Per value: decayed sums of groups, rewards, no-signal groups and utility, like the
    regions of RunStats but keyed by the label instead of an embedding cell. A value
    that parses as a number also enters as that number, scaled by the largest |value|
    seen, so an ordered label (a level 1..5) is one input the network can extrapolate.
    """

    def __init__(self, half_life: float = 10.0) -> None:
        if half_life <= 0:
            raise ValueError("half_life > 0")
        self.decay = 0.5 ** (1.0 / half_life)
        self.keys: dict[str, int] = {}
        self.sums = np.zeros((0, 5))  # count, reward count, reward sum, no-signal, utility
        self.abs_utility = 0.0
        self.scale = 0.0  # largest |numeric value| seen

    def _index(self, value: str | None, grow: bool) -> int:
        key = "" if value is None else str(value)
        i = self.keys.get(key)
        if i is None:
            if len(self.keys) < MAX_CATEGORIES:
                if not grow:
                    return -1
                i = self.keys[key] = len(self.keys)
                self.sums = np.vstack([self.sums, np.zeros((1, 5))])
            else:
                i = zlib.crc32(key.encode()) % MAX_CATEGORIES
        return i

    @staticmethod
    def _number(value: str | None) -> float | None:
        try:
            x = float(value) if value is not None else None
        except ValueError:
            return None
        return x if x is not None and math.isfinite(x) else None

    def features(self, values: list[str | None] | None, n: int) -> np.ndarray:
        """float32 [n, N_CATEGORY_FEATURES] (an unseen value reads as the priors)."""
        out = np.zeros((n, N_CATEGORY_FEATURES), dtype=np.float32)
        out[:, 0:2] = 0.5
        if values is None:
            return out
        norm = self.abs_utility if self.abs_utility > 0 else 1.0
        for r, v in enumerate(values):
            i = self._index(v, grow=False)
            if i >= 0:
                cnt, rcnt, rsum, nosig, util = self.sums[i]
                out[r, 0] = (rsum + 0.5 * PRIOR_WEIGHT) / (rcnt + PRIOR_WEIGHT)
                out[r, 1] = (nosig + 0.5 * PRIOR_WEIGHT) / (rcnt + PRIOR_WEIGHT)
                out[r, 2] = np.clip(util / max(cnt, 1e-9) / norm, -5.0, 5.0) if cnt > 0 else 0
                out[r, 3] = math.log1p(cnt) / EVIDENCE_SCALE
            x = self._number(v)
            if x is not None:
                out[r, 4] = x / self.scale if self.scale > 0 else 0.0
                out[r, 5] = 1.0
        return out

    def push(self, batch: list[Observation], utilities: np.ndarray) -> None:
        """Fold one applied batch in (utilities aligned with batch, NaN = none)."""
        rows = [self._index(o.category, grow=True) for o in batch]  # may grow `sums`
        self.sums *= self.decay
        u_sum, u_n = 0.0, 0
        for o, i, u in zip(batch, rows, np.asarray(utilities, dtype=np.float64)):
            row = self.sums[i]
            if math.isfinite(u):
                row[0] += 1.0
                row[4] += u
                u_sum, u_n = u_sum + abs(u), u_n + 1
            if o.mean_reward is not None and math.isfinite(o.mean_reward):
                row[1] += 1.0
                row[2] += float(o.mean_reward)
                row[3] += 1.0 if (o.mean_abs_advantage or 0.0) == 0.0 else 0.0
            x = self._number(o.category)
            if x is not None:
                self.scale = max(self.scale, abs(x))
        if u_n:
            m = u_sum / u_n
            self.abs_utility = (m if self.abs_utility == 0.0
                                else self.decay * self.abs_utility + (1.0 - self.decay) * m)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": float(self.decay), "keys": list(self.keys),
                "sums": self.sums.copy(), "abs_utility": float(self.abs_utility),
                "scale": float(self.scale)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.keys = {str(k): i for i, k in enumerate(state["keys"])}
        self.sums = np.asarray(state["sums"], dtype=np.float64).reshape(-1, 5).copy()
        self.abs_utility = float(state["abs_utility"])
        self.scale = float(state["scale"])
