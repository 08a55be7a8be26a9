"""OSMD loss against hand-computed values, and its gradients' signs and zeros."""

import math

import pytest
import torch

from curator.curation.osmd import osmd_loss, osmd_terms


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_ratio_inside_clip() -> None:
    # p_new = [0.55, 0.45], p_old = [0.5, 0.5] -> r = [1.1, 0.9], inside [0.8, 1.2]
    z = t(math.log(1.1), math.log(0.9)).requires_grad_()
    loss = osmd_loss(z, t(0, 0), t(2, -1))
    assert loss.item() == pytest.approx((-2.2 + 0.9) / 2)  # -0.65
    loss.backward()
    # dL/dz0 = -[U0 p0 (1-p0) - U1 p1 p0] = -(0.495 + 0.2475)
    assert z.grad.tolist() == pytest.approx([-0.7425, 0.7425])


def test_ratio_outside_clip_positive_utility() -> None:
    # p_new = [0.75, 0.25] -> r = [1.5, 0.5]
    z = t(math.log(1.5), math.log(0.5)).requires_grad_()
    terms = osmd_terms(z, t(0, 0), t(1, 1))
    # r0 > 1+rho, U > 0: clipped to -1.2; r1 < 1-rho, U > 0: unclipped -0.5
    assert terms.tolist() == pytest.approx([-1.2, -0.5])
    assert terms.mean().item() == pytest.approx(-0.85)
    (g0,) = torch.autograd.grad(terms[0], z, retain_graph=True)
    assert g0.tolist() == [0.0, 0.0]  # clipped item gives no gradient
    (g1,) = torch.autograd.grad(terms[1], z)
    assert g1.tolist() == pytest.approx([0.375, -0.375])  # -dr1/dz = -2 p1 (d1j - pj)


def test_ratio_outside_clip_negative_utility() -> None:
    z = t(math.log(1.5), math.log(0.5)).requires_grad_()
    terms = osmd_terms(z, t(0, 0), t(-1, -1))
    # r0 > 1+rho, U < 0: unclipped 1.5; r1 < 1-rho, U < 0: clipped 0.8
    assert terms.tolist() == pytest.approx([1.5, 0.8])
    assert osmd_loss(z, t(0, 0), t(-1, -1)).item() == pytest.approx(1.15)
    (g0,) = torch.autograd.grad(terms[0], z, retain_graph=True)
    assert g0.tolist() == pytest.approx([0.375, -0.375])
    (g1,) = torch.autograd.grad(terms[1], z)
    assert g1.tolist() == [0.0, 0.0]


def test_equal_logits_give_minus_mean_utility() -> None:
    z_old = t(1.0, 2.0, 3.0)
    z = (z_old + 5.0).requires_grad_()  # a shift leaves the batch softmax unchanged
    u = t(0.5, -1.0, 2.0)
    loss = osmd_loss(z, z_old, u)
    assert loss.item() == pytest.approx(-(0.5 - 1.0 + 2.0) / 3)
    loss.backward()
    # descent raises the logit of the positive-utility item most
    assert int(torch.argmin(z.grad)) == 2 and z.grad[1] > 0


def test_old_logits_are_constants_and_validation() -> None:
    z_old = t(0.0, 1.0).requires_grad_()
    z = t(0.5, 0.2).requires_grad_()
    osmd_loss(z, z_old, t(1, 1)).backward()
    assert z_old.grad is None
    with pytest.raises(ValueError):
        osmd_loss(z, t(0, 0, 0), t(1, 1, 1))
    with pytest.raises(ValueError):
        osmd_loss(z, t(0, 0), t(1, 1), rho=1.5)
