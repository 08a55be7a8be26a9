"""`actor_curator`: a neural curator trained online by clipped OSMD on the realised
policy improvement Û (Actor-Curator, arXiv 2602.20532; docs/design.md §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from curator.curation.osmd import batch_kl, batch_ratio, osmd_loss
from curator.curation.scorer import MLPScorer, PassRateHead, fit_pass_rate, resolve_device
from curator.curation.stats import N_CATEGORY_FEATURES, N_FEATURES, CategoryStats, RunStats
from curator.curation.strategies.base import (
    StrategyBase,
    StrategyError,
    base_extra,
    check_sampling,
    check_state_name,
    derive_seed,
    mean_or_none,
    require,
)
from curator.curation.strategies.torchstate import (
    arrays_to_tensors,
    embeddings_tensor,
    load_optimizer_state,
    module_state,
    optimizer_state,
    tensors_to_arrays,
)
from curator.curation.types import Observation, Pool, UpdateStats
from curator.curation.utility import ScalingMode, UtilityWindow, scale


class ActorCuratorStrategy(StrategyBase):
    """Pass-rate prior + a bounded learned part trained by clipped OSMD on Û.

    z(x) = w·log(1 − p̂^G − (1−p̂)^G) + R·tanh(f(x)/R), w = 2, R = 2: the prior is the
    log-probability that a group of G rollouts has reward variance — flat across the
    middle, so a coin flip sitting at p̂ = 0.5 gains nothing over a problem at 0.3, and
    weak enough that the learned part can overrule it (`prior_shape: "peak"`, w = 15 is
    the earlier, pcl-like log 2√(p̂(1−p̂)) that let coin flips win). z_t is the logit at
    selection time (raw, before the sampler's temperature). Everything is trained from the first
    update; the logits drive selection after `dormant_steps` applied updates. What
    keeps it from stalling on a mastered region (docs/design.md §4, with the ablations
    in bench/curator_log.md):

    * the prior: p̂ comes from a pass-rate head fitted to observed rewards, so it moves
      with the student and the frontier moves with it;
    * statistics as inputs of f (`stats`): the region's and the problem's recent pass
      rate, share of groups without signal and utility (curation/stats.py), so f sees a
      region mastered, and a problem with signal but no utility (a coin flip), at once;
    * the self-normalised ratio (`ratio: "sampled"`): the paper's batch-softmax ratio
      pushes q's favourites down whatever they teach, a pull toward uniform;
    * a trust region (`max_kl`): epochs of minibatch steps stop once the KL between the
      behaviour and the new distribution over the batch exceeds `max_kl`;
    * an exploration share (`explore`..`explore_max`): at least ⌈explore·B⌉ items of
      every batch come from the uniform fill — a control group from the same pools —
      and the share grows toward `explore_max` while the curator's items realise no
      more utility than the explore items;
    * a utility that does not credit noise (`credit: "progress"`, see `_credit`): the
      in-sample Û of a coin flip is positive (a GRPO step raises whatever was rewarded),
      so Û counts only as far as the pass rate of the problem's region (and, on a
      revisit, its own) moves.

    Options measured and left off: `baseline` (utility relative to the explore items),
    `credit: "region"`, `embedding_input`, `ratio: "softmax"`.
    """

    name: ClassVar[str] = "actor_curator"
    # state only training reads: a replica's selection copy loads the rest
    # (`load_selection_state`), about 40% of the bytes
    training_keys: ClassVar[frozenset[str]] = frozenset(
        {"head_optimizer", "optimizer", "generator", "window"})

    @dataclass(frozen=True)
    class Params:
        lr: float = 1e-3
        weight_decay: float = 0.01
        grad_clip: float = 1.0
        minibatch: int = 16
        minibatches: int = 0  # > 0: minibatch = ⌈batch / minibatches⌉ instead (PPO-style)
        epochs: int = 4
        rho: float = 0.2
        max_kl: float = 0.02  # 0 disables the trust region
        horizon: int = 10
        scaling: ScalingMode = "amplify"
        amplifier: float = 1000.0
        dormant_steps: int = 5
        top_p: float = 1.0
        temperature: float = 1.0
        hidden: int = 64
        stats: bool = True
        regions: int = 32
        stats_half_life: float = 10.0
        explore: float = 0.05
        explore_max: float = 0.5
        baseline: bool = False
        fallback: Literal["trend", "abs_advantage"] = "trend"  # rewards-only utility
        credit: Literal["raw", "region", "progress"] = "progress"
        pass_head: bool = True  # predicted pass rate (and its signal) as scorer inputs
        head_steps: int = 4
        head_lr: float = 1e-3
        head_hidden: int = 256
        embedding_input: bool = False  # the learned part reads statistics + p̂ only
        ratio: Literal["sampled", "softmax"] = "sampled"
        logit_range: float = 2.0  # the learned part is range·tanh(raw/range); 0: unbounded
        prior: float = 2.0  # weight of the prior term added to the logit; 0: none
        # "peak": log 2√(p̂(1−p̂)) (pcl's, highest at p̂ = 0.5 where a coin flip sits);
        # "signal": log P(a group of `group_size` rollouts has reward variance) =
        # log(1 − p̂^G − (1−p̂)^G), flat across the middle, falling only where groups
        # come back all-equal
        prior_shape: Literal["peak", "signal"] = "signal"
        group_size: int = 8  # G the trainer samples per problem (the "signal" prior)
        # a metadata field (a level, a type, a source) whose per-value statistics are
        # inputs of the learned part, as sec reads its field; "" = none
        field: str = ""

        def validate(self) -> None:
            require(self.lr > 0, "lr", "must be > 0")
            require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
            require(self.grad_clip > 0, "grad_clip", "must be > 0")
            require(self.minibatch >= 2, "minibatch", "must be >= 2 (softmax over one item)")
            require(0 <= self.minibatches <= 1024, "minibatches", "must be in [0, 1024]")
            require(1 <= self.epochs <= 100, "epochs", "must be in [1, 100]")
            require(0 < self.rho < 1, "rho", "must be in (0, 1)")
            require(self.max_kl >= 0, "max_kl", "must be >= 0 (0 disables)")
            require(1 <= self.horizon <= 10_000, "horizon", "must be in [1, 10000]")
            require(self.amplifier > 0, "amplifier", "must be > 0")
            require(self.dormant_steps >= 0, "dormant_steps", "must be >= 0")
            require(1 <= self.hidden <= 8192, "hidden", "must be in [1, 8192]")
            require(1 <= self.regions <= 4096, "regions", "must be in [1, 4096]")
            require(1 <= self.head_steps <= 100, "head_steps", "must be in [1, 100]")
            require(self.head_lr > 0, "head_lr", "must be > 0")
            require(1 <= self.head_hidden <= 8192, "head_hidden", "must be in [1, 8192]")
            require(0 <= self.prior <= 100, "prior", "must be in [0, 100]")
            require(0 <= self.logit_range <= 100, "logit_range", "must be in [0, 100]")
            require(self.prior == 0 or self.pass_head, "prior", "needs pass_head")
            require(2 <= self.group_size <= 1024, "group_size", "must be in [2, 1024]")
            require(self.stats_half_life > 0, "stats_half_life", "must be > 0")
            require(0 <= self.explore <= 1, "explore", "must be in [0, 1]")
            require(self.explore <= self.explore_max <= 1, "explore_max",
                    "must be in [explore, 1]")
            check_sampling(self.top_p, self.temperature)

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = params.field or None
        self.requires_rewards = False
        self.uses_embeddings = True
        self.top_p = params.top_p
        self.temperature = params.temperature
        self.dim = dim
        self.device = resolve_device(device)
        n_in = ((dim if params.embedding_input else 0) + (N_FEATURES if params.stats else 0)
                + (N_CATEGORY_FEATURES if params.field else 0) + (2 if params.pass_head else 0))
        init_gen = torch.Generator().manual_seed(derive_seed(seed, 0))
        self._model = MLPScorer(n_in, params.hidden, generator=init_gen).to(self.device)
        head_gen = torch.Generator().manual_seed(derive_seed(seed, 2))
        self._head = PassRateHead(dim, params.head_hidden, generator=head_gen).to(self.device)
        # foreach: one batched kernel per step instead of one per tensor (torch's CPU
        # default is per tensor); the same numbers, ~20% less time per update here
        self._head_opt = torch.optim.Adam(self._head.parameters(), lr=params.head_lr,
                                          foreach=True)
        self._opt = torch.optim.AdamW(
            self._model.parameters(), lr=params.lr, weight_decay=params.weight_decay,
            foreach=True,
        )
        self._gen = torch.Generator().manual_seed(derive_seed(seed, 1))  # minibatches
        self._window = UtilityWindow(params.horizon)
        self._stats = RunStats(dim, params.regions, params.stats_half_life)
        self._cats = CategoryStats(params.stats_half_life)
        # decayed [weight, sum] of the scaled utility of curator / explore items
        self._arms = np.zeros((2, 2))
        self._updates = 0

    @property
    def explore_share(self) -> float:
        """Share of each batch left to the uniform fill (see the class doc)."""
        p = self.params
        if not self.active():
            return 1.0
        (wc, sc), (we, se) = self._arms
        if wc < 1.0 or we < 1.0:
            return p.explore
        cur, exp_ = sc / wc, se / we
        # the curator's lead over uniform picks, relative to their scale
        lead = (cur - exp_) / (abs(cur) + abs(exp_) + 1e-12)
        t = float(np.clip(1.0 - lead / 0.2, 0.0, 1.0))  # lead ≥ 0.2 → floor; ≤ 0 → max
        return p.explore + (p.explore_max - p.explore) * t

    def _inputs(self, problem_ids: np.ndarray, embeddings: Any,
                categories: list[str | None] | None = None) -> torch.Tensor:
        """Scorer inputs: [embedding, run statistics, the field's statistics, p̂, the
        prior's log-signal of p̂] as configured (the last column must stay the prior)."""
        emb = np.asarray(np.stack(list(embeddings)) if isinstance(embeddings, list)
                         else embeddings, dtype=np.float32)
        emb_t = embeddings_tensor(emb, self.dim, self.device)  # also validates the shape
        parts = [emb] if self.params.embedding_input else []
        if self.params.stats:
            parts.append(self._stats.features(problem_ids, emb))
        if self.params.field:
            parts.append(self._cats.features(categories, len(problem_ids)))
        if self.params.pass_head:
            self._head.eval()
            with torch.no_grad():
                ph = self._head(emb_t).cpu().numpy()
            ph = ph.astype(np.float32)[:, None]
            parts += [ph, self._prior_term(ph)]
        x = np.concatenate(parts, axis=1)
        return embeddings_tensor(x, x.shape[1], self.device)

    def _prior_term(self, ph: np.ndarray) -> np.ndarray:
        """The log-signal of predicted pass rates (see Params.prior_shape)."""
        if self.params.prior_shape == "peak":
            sig = 2.0 * np.sqrt(np.clip(ph * (1.0 - ph), 0.0, None))
        else:
            g, p64 = self.params.group_size, np.clip(ph.astype(np.float64), 0.0, 1.0)
            sig = np.clip(1.0 - p64**g - (1.0 - p64) ** g, 0.0, 1.0)
        return np.log(sig + 1e-3).astype(np.float32)

    def _train_head(self, batch: list[Observation]) -> float | None:
        """Fit the pass-rate head to the batch's observed mean rewards (MSE)."""
        used = [o for o in batch if o.mean_reward is not None and math.isfinite(o.mean_reward)]
        if not used:
            return None
        emb = embeddings_tensor([o.embedding for o in used], self.dim, self.device)
        target = torch.tensor([o.mean_reward for o in used], dtype=torch.float32,
                              device=self.device)
        return fit_pass_rate(self._head, self._head_opt, emb, target, self.params.head_steps)

    def logits(self, pool: Pool) -> np.ndarray:
        if len(pool.problem_ids) == 0:
            return np.zeros(0, dtype=np.float64)
        x = self._inputs(np.asarray(pool.problem_ids), pool.embeddings, pool.categories)
        self._model.eval()
        with torch.no_grad():
            z = self._score(x)
        return z.double().cpu().numpy()

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """z = MLP(x) + prior · log 2√(p̂(1−p̂)): the learned residual on top of the
        pass-rate prior (the last input column is that log-signal)."""
        z = self._model(x)
        r = self.params.logit_range
        if r > 0:
            z = r * torch.tanh(z / r)
        if self.params.prior > 0:
            z = z + self.params.prior * x[:, -1]
        return z

    def active(self) -> bool:
        return self._updates >= self.params.dormant_steps

    def update(self, batch: list[Observation]) -> UpdateStats:
        """Window-average and scale each Û, then minimise the OSMD loss.

        Observations without a (finite) utility are skipped; a batch with none applies
        no update and does not count toward `dormant_steps`. Minibatches of one item are
        skipped (the ratio over a single item is always 1: no signal).
        """
        p = self.params
        used = [o for o in batch if o.utility is not None and math.isfinite(o.utility)]
        mean_reward = mean_or_none(o.mean_reward for o in batch)
        if not used:
            extra = base_extra(batch, self._updates) | {"fallback_share": 0.0}
            return UpdateStats(mean_reward=mean_reward, extra=extra)
        regions = self._region_trends(used) if p.credit == "progress" else [None] * len(used)
        raw = [self._credit(o, r) for o, r in zip(used, regions)]
        windowed = np.array([self._window.push(o.problem_id, u) for o, u in zip(used, raw)])
        scaled = scale(windowed, p.scaling, p.amplifier)
        # float32 is what the loss sees: a finite float64 beyond ~3e38 is inf there
        keep = np.abs(scaled) <= np.finfo(np.float32).max  # False for NaN too
        if not keep.all():
            used = [o for o, k in zip(used, keep) if k]
            scaled = scaled[keep]
            if not used:
                extra = base_extra(batch, self._updates) | {"fallback_share": 0.0}
                return UpdateStats(mean_reward=mean_reward, extra=extra)
        raw_used = [u for u, k in zip(raw, keep) if k]
        n = len(used)
        # inputs as they were at selection (before this batch enters the statistics)
        x = self._inputs(np.array([o.problem_id for o in used], dtype=np.int64),
                         [o.embedding for o in used], [o.category for o in used])
        if p.credit == "region":
            scaled = scaled * self._region_credit([o.embedding for o in used])
        z_old = torch.tensor([o.logit for o in used], dtype=torch.float32, device=self.device)
        is_cur = np.array([o.source == "curator" for o in used])
        base = self._baseline()
        target = scaled - base if p.baseline else scaled
        util = torch.tensor(target, dtype=torch.float32, device=self.device)
        tau = p.temperature

        self._model.train()
        losses: list[float] = []
        steps, kl = 0, 0.0
        stop = False
        size = p.minibatch if p.minibatches == 0 else max(2, -(-n // p.minibatches))
        for _ in range(p.epochs):
            order = torch.randperm(n, generator=self._gen)
            for start in range(0, n, size):
                idx = order[start : start + size]
                if idx.numel() < 2:
                    continue
                idx = idx.to(self.device)
                loss = osmd_loss(self._score(x[idx]), z_old[idx], util[idx], p.rho, tau, p.ratio)
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self._model.parameters(), p.grad_clip)
                if not (torch.isfinite(loss) and torch.isfinite(norm)):
                    self._opt.zero_grad(set_to_none=True)  # an overflowing step: skip it
                    continue
                self._opt.step()
                steps += 1
                losses.append(float(loss.item()))
                if p.max_kl > 0:
                    with torch.no_grad():
                        kl = float(batch_kl(z_old, self._score(x), tau, p.ratio))
                    if kl > p.max_kl:
                        stop = True
                        break
            if stop:
                break
        with torch.no_grad():
            z_new = self._score(x)
            ratio = batch_ratio(z_new, z_old, tau, p.ratio)
            kl = float(batch_kl(z_old, z_new, tau, p.ratio))
        # the statistics keep the utility the curator is trained on: with rewards only,
        # the trend-credited one (raw mean |A| would make "had signal" look like value)
        self._stats.push(used, np.asarray(raw_used, dtype=np.float64))
        if p.field:
            self._cats.push(used, np.asarray(raw_used, dtype=np.float64))
        head_loss = self._train_head(batch) if p.pass_head else None
        self._push_arms(scaled, is_cur)
        self._updates += 1
        fallback = sum(o.utility_kind == "abs_advantage" for o in used) / n
        extra = base_extra(batch, self._updates) | {
            "fallback_share": fallback,
            "clip_fraction": float(((ratio - 1.0).abs() > p.rho).float().mean()),
            "ratio_dev": float((ratio - 1.0).abs().mean()),
            "kl": kl,
            "opt_steps": float(steps),
            "logit_std": float(z_new.std()) if n > 1 else 0.0,
            "baseline": float(base),
            "explore_share": self.explore_share,
        }
        if head_loss is not None:
            extra["head_loss"] = head_loss
        return UpdateStats(
            loss=sum(losses) / len(losses) if losses else None,
            mean_utility=float(scaled.mean()),
            mean_reward=mean_reward,
            extra=extra,
        )

    def _credit(self, o: Observation, region: float | None = None) -> float:
        """The utility the curator is trained on for one observation.

        The paper's Û (log-ratios sent) is an in-sample improvement, which a coin flip
        has too; without log-ratios the service's Û is mean |A|, largest for coin flips.
        `credit: "progress"` (the default since issue 25: bench/curator_log.md §7)
        credits Û as |Û| × trend, the trend the region's (`region`, `_region_trends`)
        and on a revisit the mean of it and the problem's own (`_trend`), so what does
        not move under training averages zero; `credit: "raw"` keeps Û as sent.
        Rewards only (`fallback: "trend"`), mean |A| is credited by the problem's own
        trend only and a first visit earns nothing; `fallback: "abs_advantage"` keeps
        mean |A| as is.
        """
        u = float(o.utility)  # type: ignore[arg-type]
        if o.utility_kind == "abs_advantage":  # rewards only: mean |A| says "had signal"
            if self.params.fallback == "abs_advantage":
                return u
            trend = self._trend(o)
            # the problem's own trend only: the region's would credit a coin flip for the
            # learnable problems around it, whose mean |A| is no larger than its own
            return 0.0 if trend is None else u * trend
        if self.params.credit != "progress":
            return u
        trend = self._trend(o)
        if trend is None and region is None:
            return u
        parts = [t for t in (trend, region) if t is not None]
        return abs(u) * sum(parts) / len(parts)

    def _region_trends(self, batch: list[Observation]) -> list[float | None]:
        """Per observation, clip(its region's pass-rate trend / 0.05, −1, 1)
        (RunStats.region_trend): whether the part of the bank it sits in is being
        learned; None before the regions exist or without rewards."""
        if len(self._stats.centroids) == 0:
            return [None] * len(batch)
        t = np.clip(self._stats.region_trend(np.stack([o.embedding for o in batch])) / 0.05,
                    -1.0, 1.0)
        return [None if o.mean_reward is None else float(v) for o, v in zip(batch, t)]

    def _trend(self, o: Observation) -> float | None:
        """clip((r̄ now − the problem's earlier EMA pass rate) / 0.25, −1, 1): how its
        pass rate moved since the run last saw it; None on a first visit (or without
        rewards). A problem being learned gains, a coin flip averages zero, one being
        forgotten loses."""
        rec = self._stats.record(o.problem_id)
        if rec is None or o.mean_reward is None or not math.isfinite(o.mean_reward):
            return None
        return max(-1.0, min(1.0, (float(o.mean_reward) - float(rec[0])) / 0.25))

    def _region_credit(self, embeddings: list[np.ndarray]) -> np.ndarray:
        """Weight 1/(items of the batch in the item's region), times the uniform
        expectation B/regions: Û(x) measures the policy's whole step on x, which grows
        with how many related items were selected, so raw Û would reward crowding a
        region for its own sake. Ones before the regions exist."""
        if len(self._stats.centroids) == 0:
            return np.ones(len(embeddings))
        reg = self._stats.regions(np.stack(embeddings))
        counts = np.bincount(reg, minlength=len(self._stats.centroids))[reg]
        return (len(reg) / len(self._stats.centroids)) / counts

    def _baseline(self) -> float:
        """Recent mean scaled utility of explore items (uniform picks from the same
        pools); 0 until there are a few."""
        we, se = self._arms[1]
        return float(se / we) if we >= 1.0 else 0.0

    def _push_arms(self, scaled: np.ndarray, is_cur: np.ndarray) -> None:
        decay = self._stats.decay
        self._arms *= decay
        for row, mask in ((0, is_cur), (1, ~is_cur)):
            if mask.any():
                self._arms[row] += (float(mask.sum()), float(scaled[mask].sum()))

    def _input_kinds(self) -> str:
        p = self.params
        kinds = [("embedding", p.embedding_input), ("stats", p.stats),
                 (f"field:{p.field}", bool(p.field)), ("pass_head", p.pass_head)]
        return "+".join(k for k, on in kinds if on)

    def state_dict(self) -> dict[str, Any]:
        win = self._window.state_dict()
        return {
            "name": self.name,
            "dim": self.dim,
            "hidden": self.params.hidden,
            "updates": self._updates,
            "inputs": self._input_kinds(),
            "run_stats": arrays_to_tensors(self._stats.state_dict()),
            "category_stats": arrays_to_tensors(self._cats.state_dict()),
            "arms": torch.from_numpy(self._arms.copy()),
            "model": module_state(self._model),
            "head": module_state(self._head),
            "head_optimizer": optimizer_state(self._head_opt),
            "optimizer": optimizer_state(self._opt),
            "generator": self._gen.get_state(),
            "window": {
                "horizon": win["horizon"],
                "ids": torch.tensor(win["ids"], dtype=torch.int64),
                "lengths": torch.tensor(win["lengths"], dtype=torch.int64),
                "values": torch.tensor(win["values"], dtype=torch.float64),
            },
        }

    def selection_copy(self) -> ActorCuratorStrategy:
        """An independent copy that selects exactly as this one does, without what only
        training needs (optimisers, utility window, minibatch generator): the embedded
        worker hands one to the API after every update."""
        copy = ActorCuratorStrategy(self.params, dim=self.dim, seed=0, device=str(self.device))
        copy._model.load_state_dict(self._model.state_dict())
        copy._head.load_state_dict(self._head.state_dict())
        copy._stats.load_state_dict(self._stats.state_dict())
        copy._cats.load_state_dict(self._cats.state_dict())
        copy._arms = self._arms.copy()
        copy._updates = self._updates
        copy.category_field = self.category_field
        return copy

    def warm_state(self) -> dict[str, Any]:
        """What another run may start from (`init_from`): the learned curator — scorer and
        pass-rate head — without the optimisers, the utility window or the run's
        statistics, which describe this run's student."""
        return {"name": self.name, "dim": self.dim, "hidden": self.params.hidden,
                "head_hidden": self.params.head_hidden, "inputs": self._input_kinds(),
                "model": module_state(self._model), "head": module_state(self._head)}

    def load_warm(self, warm: dict[str, Any]) -> None:
        """Start from another run's `warm_state` (StrategyError if it does not fit)."""
        mine = (self.name, self.dim, self.params.hidden, self.params.head_hidden,
                self._input_kinds())
        theirs = (warm.get("name"), warm.get("dim"), warm.get("hidden"),
                  warm.get("head_hidden"), warm.get("inputs"))
        if mine != theirs:
            raise StrategyError(
                "init_from: the source curator has (strategy, dim, hidden, head_hidden, "
                f"inputs) = {theirs}, this run's is {mine}")
        self._model.load_state_dict(warm["model"])
        self._head.load_state_dict(warm["head"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_selection_state(state)
        load_optimizer_state(self._head_opt, state["head_optimizer"])
        load_optimizer_state(self._opt, state["optimizer"])
        self._gen.set_state(state["generator"])
        win = state["window"]
        self._window.load_state_dict(
            {
                "horizon": int(win["horizon"]),
                "ids": win["ids"].tolist(),
                "lengths": win["lengths"].tolist(),
                "values": win["values"].tolist(),
            }
        )

    def load_selection_state(self, state: dict[str, Any]) -> None:
        """Everything selection reads (scorer, head, statistics, arms, update count):
        enough for `logits`, `active` and `explore_share`, not for `update`."""
        check_state_name(state, self.name)
        if (state["dim"], state["hidden"], state.get("inputs")) != (
                self.dim, self.params.hidden, self._input_kinds()):
            raise ValueError(
                f"state has dim={state['dim']}, hidden={state['hidden']}, "
                f"inputs={state.get('inputs')}; this curator has dim={self.dim}, "
                f"hidden={self.params.hidden}, inputs={self._input_kinds()}"
            )
        self._model.load_state_dict(state["model"])
        self._head.load_state_dict(state["head"])
        self._stats.load_state_dict(tensors_to_arrays(state["run_stats"]))
        if "category_stats" in state:  # checkpoints before the `field` option have none
            self._cats.load_state_dict(tensors_to_arrays(state["category_stats"]))
        self._arms = state["arms"].numpy().astype(np.float64).copy()
        self._updates = int(state["updates"])
