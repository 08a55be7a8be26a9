"""Small torch networks over problem embeddings, and device selection.

The default curator scorer is an MLP over the embedding (docs/design.md §4: cheap on a CPU,
instant on a GPU); its last layer starts at zero so a new curator is exactly uniform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init


def init_linear_(
    layer: nn.Linear, generator: torch.Generator | None = None, *, zero: bool = False
) -> None:
    """torch's default Linear init (U(±1/√fan_in)), but from an explicit generator so
    instances are reproducible without touching the global RNG; or all zeros."""
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
            return
        bound = 1.0 / math.sqrt(layer.in_features)
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


class MLPScorer(nn.Module):
    """Linear(d,h)-GELU-Linear(h,h)-GELU-Linear(h,1): embedding [M,d] → logits [M]."""

    def __init__(self, dim: int, hidden: int = 256, *, generator: torch.Generator | None = None):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.net = nn.Sequential(
            skip_init(nn.Linear, dim, hidden),
            nn.GELU(),
            skip_init(nn.Linear, hidden, hidden),
            nn.GELU(),
            skip_init(nn.Linear, hidden, 1),
        )
        init_linear_(self.net[0], generator)
        init_linear_(self.net[2], generator)
        init_linear_(self.net[4], zero=True)

    def forward(self, emb: Tensor) -> Tensor:
        return self.net(emb).squeeze(-1)


class PassRateHead(nn.Module):
    """Linear(d,h)-GELU-Linear(h,1)-sigmoid: embedding [M,d] → predicted pass rate [M].

    The last layer starts at zero, so every problem starts at p = 0.5.
    """

    def __init__(self, dim: int, hidden: int = 256, *, generator: torch.Generator | None = None):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.net = nn.Sequential(
            skip_init(nn.Linear, dim, hidden), nn.GELU(), skip_init(nn.Linear, hidden, 1)
        )
        init_linear_(self.net[0], generator)
        init_linear_(self.net[2], zero=True)

    def forward(self, emb: Tensor) -> Tensor:
        return torch.sigmoid(self.net(emb).squeeze(-1))


def fit_pass_rate(head: nn.Module, opt: torch.optim.Optimizer, inputs: Tensor,
                  target: Tensor, steps: int) -> float:
    """`steps` full-batch optimizer steps of MSE between the head's predicted pass rates
    and the observed mean rewards; the last loss. (pcl's value head and actor_curator's
    prior share it, so both learn p̂ the same way.)"""
    head.train()
    loss = torch.zeros(())
    for _ in range(steps):
        loss = torch.mean((head(inputs) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.item())


def resolve_device(setting: str) -> torch.device:
    """Map a settings string to a device: "auto" (cuda if available, else cpu), "cpu",
    "cuda" or "cuda:N". Asking for CUDA where there is none is a ValueError, so a
    misconfigured deployment fails at start rather than on the first update."""
    s = setting.strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        index = s.partition(":")[2]
        if index and not index.isdigit():
            raise ValueError(f"invalid device {setting!r}")
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r} requested but CUDA is not available")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {setting!r}: only {torch.cuda.device_count()} GPU(s)")
        return torch.device(s)
    raise ValueError(f"invalid device {setting!r}: use auto, cpu, cuda or cuda:N")
