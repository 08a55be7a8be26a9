"""Clipped OSMD loss for the curator update (DESIGN §2).

The negative-entropy mirror step p_{t+1} ∝ p_t·exp(ηÛ), taken in parameter space with
a PPO-style proximal clip on the ratio of the new to the behaviour distribution, both
renormalised over the feedback batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def osmd_terms(z_new: Tensor, z_old: Tensor, utility: Tensor, rho: float = 0.2) -> Tensor:
    """Per-item terms max(−U·r, −U·clip(r, 1−ρ, 1+ρ)); `osmd_loss` is their mean.

    r = softmax_B(z_new) / softmax_B(z_old), computed in log space. z_old and utility
    are constants (detached). Clip bounds are (lower=1−ρ, upper=1+ρ): swapping them
    makes torch.clamp return one constant for every item (the reference code's bug).
    """
    if z_new.ndim != 1 or z_new.shape != z_old.shape or z_new.shape != utility.shape:
        raise ValueError("z_new, z_old and utility must be 1-D tensors of one length")
    if z_new.numel() == 0:
        raise ValueError("empty batch")
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    z_old = z_old.detach().to(z_new.dtype)
    u = utility.detach().to(z_new.dtype)
    ratio = torch.exp(torch.log_softmax(z_new, dim=0) - torch.log_softmax(z_old, dim=0))
    unclipped = -u * ratio
    clipped = -u * torch.clamp(ratio, min=1.0 - rho, max=1.0 + rho)
    return torch.maximum(unclipped, clipped)


def osmd_loss(z_new: Tensor, z_old: Tensor, utility: Tensor, rho: float = 0.2) -> Tensor:
    """L(φ) = mean over the batch of the clipped terms (see `osmd_terms`)."""
    return osmd_terms(z_new, z_old, utility, rho).mean()
