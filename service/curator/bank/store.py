"""Embedding store: one float32 file per bank, rows aligned with problem positions.

The database holds every embedding (the record); this file is a derived cache that lets
a select look up 2048 candidate vectors by position without loading the bank into
tensors. Any process can extend it from the database (under a file lock) when it is
behind, so replicas, restarts and a deleted data dir all heal themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from curator.bank.filelock import exclusive

RowFetcher = Callable[[int, int], list[tuple[int, bytes]]]
"""fetch(start_position, limit) -> [(position, embedding bytes)] ordered by position."""


class EmbeddingStore:
    def __init__(self, directory: Path, dim: int) -> None:
        self.dim = dim
        self.directory = directory
        self.path = directory / "embeddings.f32"
        self._lock = threading.Lock()
        self._map: np.ndarray | None = None

    @property
    def rows(self) -> int:
        try:
            return self.path.stat().st_size // (4 * self.dim)
        except FileNotFoundError:
            return 0

    def append(self, first_position: int, vectors: np.ndarray, fetch: RowFetcher) -> None:
        """Write rows starting at `first_position`; fill any gap before it from the database."""
        with exclusive(self.directory, "embeddings.lock"):
            if self.rows < first_position:
                self._sync_locked(first_position, fetch)
            if self.rows == first_position:
                with open(self.path, "ab") as fh:
                    fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self._map = None

    def sync(self, size: int, fetch: RowFetcher) -> None:
        """Make sure the file holds rows for positions [0, size)."""
        if self.rows >= size:
            return
        with exclusive(self.directory, "embeddings.lock"):
            self._sync_locked(size, fetch)
        self._map = None

    def _sync_locked(self, size: int, fetch: RowFetcher, chunk: int = 20_000) -> None:
        with open(self.path, "ab") as fh:
            have = fh.tell() // (4 * self.dim)
            while have < size:
                rows = fetch(have, min(chunk, size - have))
                if not rows:
                    break
                for pos, blob in rows:
                    if pos != have:  # a gap: a row not committed yet; stop here
                        return
                    fh.write(blob)
                    have += 1

    def lookup(self, positions: np.ndarray) -> np.ndarray:
        """Vectors for the given positions, float32 [len(positions), dim]."""
        arr = self._array()
        if positions.size and int(positions.max()) >= arr.shape[0]:
            self._map = None
            arr = self._array()
            if int(positions.max()) >= arr.shape[0]:
                raise LookupError("embedding store is behind the bank; sync it first")
        return np.asarray(arr[positions], dtype=np.float32)

    def _array(self) -> np.ndarray:
        with self._lock:
            if self._map is None or self._map.shape[0] < self.rows:
                rows = self.rows
                if rows == 0:
                    return np.zeros((0, self.dim), dtype=np.float32)
                self._map = np.memmap(self.path, dtype="<f4", mode="r", shape=(rows, self.dim))
            return self._map

    def read_all(self) -> np.ndarray:
        return self._array()
