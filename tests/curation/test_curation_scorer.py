"""Scorer network, device resolution, checkpoint bytes, and import hygiene."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import curator
from curator.curation.checkpoint import dumps, loads
from curator.curation.scorer import MLPScorer, PassRateHead, resolve_device


def test_new_scorer_is_uniform_and_seeded() -> None:
    emb = torch.randn(5, 8)
    assert MLPScorer(8, 16)(emb).tolist() == [0.0] * 5
    assert PassRateHead(8, 16)(emb).tolist() == [0.5] * 5
    a = MLPScorer(8, 16, generator=torch.Generator().manual_seed(1))
    b = MLPScorer(8, 16, generator=torch.Generator().manual_seed(1))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    with pytest.raises(ValueError):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            resolve_device("cuda")


def test_checkpoint_roundtrip() -> None:
    state = {"a": torch.arange(3), "b": [1, 2.5, "x", None, True], "c": {4: {"d": 1.0}}}
    back = loads(dumps(state))
    assert (
        torch.equal(back["a"], state["a"]) and back["b"] == state["b"] and back["c"] == state["c"]
    )


def test_curation_imports_no_web_modules() -> None:
    code = (
        "import sys, curator.curation.strategies, curator.curation.proposal, "
        "curator.curation.sampler, curator.curation.utility, curator.curation.checkpoint\n"
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'redis', 'pydantic', 'starlette') "
        "if m in sys.modules]\n"
        "assert not bad, bad"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(curator.__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
