"""Per-bank FAISS index: a derived artifact in the data dir, rebuilt from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from curator.bank.store import EmbeddingStore

IndexState = Literal["ready", "stale", "missing"]


class BankIndex:
    """Inner-product flat index over the bank's (normalised) embeddings.

    Flat search is exact; it is used for neighbour retrieval and inspection, never on the
    select hot path, so its cost does not grow select latency with the bank size.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "index.faiss"
        self._index = None

    def state(self, bank_size: int) -> tuple[IndexState, int]:
        if not self.path.exists():
            return "missing", 0
        ntotal = self._load().ntotal
        return ("ready" if ntotal == bank_size else "stale"), ntotal

    def _load(self):
        import faiss

        if self._index is None or not self.path.exists():
            self._index = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP)
        return self._index

    def build(self, store: EmbeddingStore, *, chunk: int = 100_000, progress=None) -> int:
        """(Re)build from the embedding store; returns the number of vectors indexed."""
        import faiss

        data = store.read_all()
        index = faiss.IndexFlatIP(store.dim)
        for start in range(0, data.shape[0], chunk):
            index.add(np.ascontiguousarray(data[start:start + chunk], dtype=np.float32))
            if progress is not None:
                progress(min(chunk, data.shape[0] - start))
        tmp = self.path.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)  # an empty bank has no directory yet
        faiss.write_index(index, str(tmp))
        tmp.replace(self.path)
        self._index = None
        return index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._load().search(np.ascontiguousarray(queries, dtype=np.float32), k)
