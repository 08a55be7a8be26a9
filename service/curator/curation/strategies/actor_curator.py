"""`actor_curator`: a neural curator trained online by clipped OSMD on the realised
policy improvement Û (Actor-Curator, arXiv 2602.20532; DESIGN §2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from curator.curation.osmd import osmd_loss
from curator.curation.scorer import MLPScorer, resolve_device
from curator.curation.strategies.base import (
    base_extra,
    check_sampling,
    check_state_name,
    derive_seed,
    mean_or_none,
    require,
)
from curator.curation.strategies.torchstate import (
    embeddings_tensor,
    load_optimizer_state,
    module_state,
    optimizer_state,
)
from curator.curation.types import Observation, Pool, UpdateStats
from curator.curation.utility import ScalingMode, UtilityWindow, scale


class ActorCuratorStrategy:
    """MLP scorer over embeddings; one OSMD epoch over each feedback batch.

    z_t is the logit the scorer gave the item at selection time (raw, before the
    sampler's temperature). The scorer is trained during warm-up but only drives
    selection after `dormant_steps` applied updates.
    """

    name: ClassVar[str] = "actor_curator"

    @dataclass(frozen=True)
    class Params:
        lr: float = 3e-3  # a small head over embeddings needs far more than the paper's 1e-6
        weight_decay: float = 0.01
        grad_clip: float = 1.0
        minibatch: int = 64
        epochs: int = 1
        rho: float = 0.2
        horizon: int = 10
        scaling: ScalingMode = "amplify"
        amplifier: float = 1000.0
        dormant_steps: int = 20
        top_p: float = 0.9
        temperature: float = 1.0
        hidden: int = 256

        def validate(self) -> None:
            require(self.lr > 0, "lr", "must be > 0")
            require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
            require(self.grad_clip > 0, "grad_clip", "must be > 0")
            require(self.minibatch >= 2, "minibatch", "must be >= 2 (softmax over one item)")
            require(1 <= self.epochs <= 100, "epochs", "must be in [1, 100]")
            require(0 < self.rho < 1, "rho", "must be in (0, 1)")
            require(1 <= self.horizon <= 10_000, "horizon", "must be in [1, 10000]")
            require(self.amplifier > 0, "amplifier", "must be > 0")
            require(self.dormant_steps >= 0, "dormant_steps", "must be >= 0")
            require(1 <= self.hidden <= 8192, "hidden", "must be in [1, 8192]")
            check_sampling(self.top_p, self.temperature)

    def __init__(self, params: Params, *, dim: int, seed: int, device: str = "cpu") -> None:
        self.params = params
        self.category_field: str | None = None
        self.requires_rewards = False
        self.uses_embeddings = True
        self.top_p = params.top_p
        self.temperature = params.temperature
        self.dim = dim
        self.device = resolve_device(device)
        init_gen = torch.Generator().manual_seed(derive_seed(seed, 0))
        self._model = MLPScorer(dim, params.hidden, generator=init_gen).to(self.device)
        self._opt = torch.optim.AdamW(
            self._model.parameters(), lr=params.lr, weight_decay=params.weight_decay
        )
        self._gen = torch.Generator().manual_seed(derive_seed(seed, 1))  # minibatches
        self._window = UtilityWindow(params.horizon)
        self._updates = 0

    def logits(self, pool: Pool) -> np.ndarray:
        if len(pool.problem_ids) == 0:
            return np.zeros(0, dtype=np.float64)
        emb = embeddings_tensor(pool.embeddings, self.dim, self.device)
        self._model.eval()
        with torch.no_grad():
            z = self._model(emb)
        return z.double().cpu().numpy()

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
        windowed = np.array([self._window.push(o.problem_id, o.utility) for o in used])
        scaled = scale(windowed, p.scaling, p.amplifier)
        # float32 is what the loss sees: a finite float64 beyond ~3e38 is inf there
        keep = np.abs(scaled) <= np.finfo(np.float32).max  # False for NaN too
        if not keep.all():
            used = [o for o, k in zip(used, keep) if k]
            scaled = scaled[keep]
            if not used:
                extra = base_extra(batch, self._updates) | {"fallback_share": 0.0}
                return UpdateStats(mean_reward=mean_reward, extra=extra)
        emb = embeddings_tensor([o.embedding for o in used], self.dim, self.device)
        z_old = torch.tensor([o.logit for o in used], dtype=torch.float32, device=self.device)
        util = torch.tensor(scaled, dtype=torch.float32, device=self.device)

        self._model.train()
        losses: list[float] = []
        n = len(used)
        for _ in range(p.epochs):
            order = torch.randperm(n, generator=self._gen)
            for start in range(0, n, p.minibatch):
                idx = order[start : start + p.minibatch]
                if idx.numel() < 2:
                    continue
                idx = idx.to(self.device)
                loss = osmd_loss(self._model(emb[idx]), z_old[idx], util[idx], p.rho)
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self._model.parameters(), p.grad_clip)
                if not (torch.isfinite(loss) and torch.isfinite(norm)):
                    self._opt.zero_grad(set_to_none=True)  # an overflowing step: skip it
                    continue
                self._opt.step()
                losses.append(float(loss.item()))
        self._updates += 1
        fallback = sum(o.utility_kind == "abs_advantage" for o in used) / n
        extra = base_extra(batch, self._updates) | {"fallback_share": fallback}
        return UpdateStats(
            loss=sum(losses) / len(losses) if losses else None,
            mean_utility=float(scaled.mean()),
            mean_reward=mean_reward,
            extra=extra,
        )

    def state_dict(self) -> dict[str, Any]:
        win = self._window.state_dict()
        return {
            "name": self.name,
            "dim": self.dim,
            "hidden": self.params.hidden,
            "updates": self._updates,
            "model": module_state(self._model),
            "optimizer": optimizer_state(self._opt),
            "generator": self._gen.get_state(),
            "window": {
                "horizon": win["horizon"],
                "ids": torch.tensor(win["ids"], dtype=torch.int64),
                "lengths": torch.tensor(win["lengths"], dtype=torch.int64),
                "values": torch.tensor(win["values"], dtype=torch.float64),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_name(state, self.name)
        if (state["dim"], state["hidden"]) != (self.dim, self.params.hidden):
            raise ValueError(
                f"state has dim={state['dim']}, hidden={state['hidden']}; "
                f"this curator has dim={self.dim}, hidden={self.params.hidden}"
            )
        self._model.load_state_dict(state["model"])
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
        self._updates = int(state["updates"])
