"""Serialise strategy state for the database with torch's safe (weights-only) loader."""

from __future__ import annotations

import io
from typing import Any

import torch


def dumps(state: dict[str, Any]) -> bytes:
    """torch.save into bytes; `state` must hold only tensors and python primitives."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def loads(blob: bytes) -> dict[str, Any]:
    """Inverse of `dumps`; weights_only refuses arbitrary pickled objects; tensors on CPU."""
    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
