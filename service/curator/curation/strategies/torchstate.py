"""Checkpoint helpers for torch modules/optimizers, limited to what
torch.load(weights_only=True) accepts: tensors, python primitives, lists and dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def optimizer_state(opt: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    """Only the per-parameter state (moments, step); hyperparameters come from Params,
    so param_groups (with their tuples) are rebuilt rather than stored."""
    out: dict[int, dict[str, Any]] = {}
    for key, slot in opt.state_dict()["state"].items():
        out[int(key)] = {
            n: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
            for n, v in slot.items()
        }
    return out


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict[int, dict[str, Any]]) -> None:
    """Load copies: torch's loader keeps the tensors it is given, so without them two
    optimisers loaded from one state dict would step on each other's moments."""
    full = opt.state_dict()
    full["state"] = {int(k): {n: v.clone() if isinstance(v, torch.Tensor) else v
                              for n, v in slot.items()} for k, slot in state.items()}
    opt.load_state_dict(full)


def embeddings_tensor(
    rows: list[np.ndarray] | np.ndarray, dim: int, device: torch.device
) -> torch.Tensor:
    """Stack embeddings (numpy [d] rows or an [M, d] array) into a float32 tensor."""
    arr = np.asarray(np.stack(list(rows)) if isinstance(rows, list) else rows, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected embeddings of shape [n, {dim}], got {list(arr.shape)}")
    return torch.from_numpy(arr).to(device)


def arrays_to_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays → tensors, so a numpy state (curation/stats.py) passes the
    weights-only loader; other values unchanged."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for k, v in state.items()}


def tensors_to_arrays(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `arrays_to_tensors`."""
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
