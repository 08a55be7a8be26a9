"""Serialise strategy state for the database with torch's safe (weights-only) loader."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch


def dumps(state: dict[str, Any]) -> bytes:
    """torch.save into bytes; `state` must hold only tensors and python primitives."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def loads(blob: bytes) -> dict[str, Any]:
    """Inverse of `dumps`; weights_only refuses arbitrary pickled objects; tensors on CPU."""
    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")


def non_finite_keys(state: Any, prefix: str = "") -> list[str]:
    """The keys (dotted, with list positions) of `state` that hold a NaN or an infinity,
    in tensors, arrays or plain floats, nested through dicts, lists and tuples.

    The worker checks a strategy's state after each update and before it is stored
    (worker/updater.py), and a warm start checks its source: a non-finite value in a
    curator's state makes every later select fail, so it must never be kept."""
    bad: list[str] = []
    if isinstance(state, dict):
        for key, value in state.items():
            bad += non_finite_keys(value, f"{prefix}{key}.")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            bad += non_finite_keys(value, f"{prefix}{i}.")
    elif isinstance(state, torch.Tensor):
        floating = state.is_floating_point() or state.is_complex()
        if floating and not bool(torch.isfinite(state).all()):
            bad.append(prefix.rstrip("."))
    elif isinstance(state, np.ndarray):
        if state.dtype.kind in "fc" and not bool(np.isfinite(state).all()):
            bad.append(prefix.rstrip("."))
    elif isinstance(state, float) and not math.isfinite(state):
        bad.append(prefix.rstrip("."))
    return bad
