"""Clipped OSMD loss for the curator update (docs/design.md §4).

The negative-entropy mirror step p_{t+1} ∝ p_t·exp(ηÛ), taken in parameter space with
a PPO-style proximal clip on the ratio of the new to the behaviour distribution, both
renormalised over the feedback batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def batch_ratio(z_new: Tensor, z_old: Tensor, temperature: float = 1.0,
                normalise: str = "sampled") -> Tensor:
    """The ratio of the new to the behaviour distribution over the batch, at τ.

    "softmax": r = softmax_B(z_new/τ) / softmax_B(z_old/τ) — both distributions
    renormalised over the batch, as the paper writes it. Its normaliser
    Σ_B p_new / Σ_B p_old weights items by p_old, which is right for a batch drawn
    uniformly but, for a batch drawn *from* p_old, counts the likely items twice: the
    update then pushes every favoured item down until the distribution is nearly flat.
    "sampled" (default): r = |B|·softmax_B((z_new − z_old)/τ), the self-normalised
    importance ratio for items drawn from the behaviour distribution — the per-sample
    ratios p_new/p_old divided by their plain mean over the batch. Both are 1 at
    z_new = z_old; under a uniform behaviour they coincide.
    """
    z_old = z_old.detach().to(z_new.dtype)
    if normalise == "softmax":
        return torch.exp(torch.log_softmax(z_new / temperature, dim=0)
                         - torch.log_softmax(z_old / temperature, dim=0))
    if normalise == "sampled":
        n = z_new.shape[0]
        return torch.exp(torch.log_softmax((z_new - z_old) / temperature, dim=0)) * n
    raise ValueError(f"unknown ratio normalisation {normalise!r}")


def batch_kl(z_old: Tensor, z_new: Tensor, temperature: float = 1.0,
             normalise: str = "sampled") -> Tensor:
    """KL(p_old ‖ p_new) estimated on the batch at τ: the size of one mirror step, which
    the trust region bounds. "sampled": the batch is a sample of p_old, so the estimate
    is the plain mean of −log r; "softmax": the KL between the batch-renormalised
    distributions."""
    if normalise == "sampled":
        return -torch.log(batch_ratio(z_new, z_old, temperature, "sampled")).mean()
    lo = torch.log_softmax(z_old.detach().to(z_new.dtype) / temperature, dim=0)
    ln = torch.log_softmax(z_new / temperature, dim=0)
    return (lo.exp() * (lo - ln)).sum()


def osmd_terms(z_new: Tensor, z_old: Tensor, utility: Tensor, rho: float = 0.2,
               temperature: float = 1.0, normalise: str = "softmax") -> Tensor:
    """Per-item terms max(−U·r, −U·clip(r, 1−ρ, 1+ρ)); `osmd_loss` is their mean.

    r = softmax_B(z_new/τ) / softmax_B(z_old/τ), computed in log space, at the
    temperature τ the sampler used (else τ would change the step, not just the
    sampling). z_old and utility
    are constants (detached). Clip bounds are (lower=1−ρ, upper=1+ρ): swapping them
    makes torch.clamp return one constant for every item (the reference code's bug).
    """
    if z_new.ndim != 1 or z_new.shape != z_old.shape or z_new.shape != utility.shape:
        raise ValueError("z_new, z_old and utility must be 1-D tensors of one length")
    if z_new.numel() == 0:
        raise ValueError("empty batch")
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    u = utility.detach().to(z_new.dtype)
    ratio = batch_ratio(z_new, z_old, temperature, normalise)
    unclipped = -u * ratio
    clipped = -u * torch.clamp(ratio, min=1.0 - rho, max=1.0 + rho)
    return torch.maximum(unclipped, clipped)


def osmd_loss(z_new: Tensor, z_old: Tensor, utility: Tensor, rho: float = 0.2,
              temperature: float = 1.0, normalise: str = "softmax") -> Tensor:
    """L(φ) = mean over the batch of the clipped terms (see `osmd_terms`)."""
    return osmd_terms(z_new, z_old, utility, rho, temperature, normalise).mean()
