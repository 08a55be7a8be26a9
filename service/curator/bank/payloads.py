"""Payload store: each problem's public JSON (external_id, prompt, answer, metadata),
encoded once, in two append-only files aligned with problem positions.

A select answers with 256 problems; reading them from the database and re-encoding them
cost more than the rest of the select. Problems never change once added, so their JSON
is encoded at ingest and spliced into responses. Like the embedding store this is a
derived cache: the database is the record, and any process extends the files from it.
"""

from __future__ import annotations

import json
import mmap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curator.bank.filelock import exclusive

PayloadRow = tuple[int, str, str, str | None, dict[str, Any] | None]
PayloadFetcher = Callable[[int, int], list[PayloadRow]]
"""fetch(start_position, limit) -> [(position, external_id, prompt, answer, metadata)]."""


def encode(external_id: str, prompt: str, answer: str | None,
           metadata: dict[str, Any] | None) -> bytes:
    """The members of a problem's JSON object, without the braces (spliced by the caller)."""
    body = json.dumps({"external_id": external_id, "prompt": prompt, "answer": answer,
                       "metadata": metadata or {}}, ensure_ascii=False, allow_nan=False)
    return body[1:-1].encode()


class PayloadStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_path = directory / "payloads.bin"
        self.index_path = directory / "payloads.idx"  # uint64 end offset of each row
        self._lock = threading.Lock()
        self._ends: np.ndarray | None = None
        self._data: np.ndarray | None = None

    @property
    def rows(self) -> int:
        try:
            return self.index_path.stat().st_size // 8
        except FileNotFoundError:
            return 0

    def _write(self, fragments: Sequence[bytes]) -> None:
        # Data first, then the index: a reader that sees row i's end offset finds its bytes.
        with open(self.data_path, "ab") as data:
            end = data.tell()
            ends = np.empty(len(fragments), dtype="<u8")
            for i, frag in enumerate(fragments):
                data.write(frag)
                end += len(frag)
                ends[i] = end
        with open(self.index_path, "ab") as index:
            index.write(ends.tobytes())

    def append(self, first_position: int, fragments: Sequence[bytes],
               fetch: PayloadFetcher) -> None:
        with exclusive(self.directory, "payloads.lock"):
            if self.rows < first_position:
                self._sync_locked(first_position, fetch)
            if self.rows == first_position:
                self._write(fragments)
        self._reset()

    def sync(self, size: int, fetch: PayloadFetcher) -> None:
        if self.rows >= size:
            return
        with exclusive(self.directory, "payloads.lock"):
            self._sync_locked(size, fetch)
        self._reset()

    def _sync_locked(self, size: int, fetch: PayloadFetcher, chunk: int = 20_000) -> None:
        have = self.rows
        self._truncate_partial_data(have)
        while have < size:
            rows = fetch(have, min(chunk, size - have))
            batch = []
            for pos, ext, prompt, answer, meta in rows:
                if pos != have + len(batch):  # a row not committed yet: stop here
                    break
                batch.append(encode(ext, prompt, answer, meta))
            if not batch:
                return
            self._write(batch)
            have += len(batch)

    def _truncate_partial_data(self, rows: int) -> None:
        """Drop data bytes past the last indexed row (a writer died between the files)."""
        if not self.data_path.exists():
            return
        end = 0
        if rows:
            with open(self.index_path, "rb") as fh:
                fh.seek((rows - 1) * 8)
                end = int(np.frombuffer(fh.read(8), dtype="<u8")[0])
        if self.data_path.stat().st_size > end:
            with open(self.data_path, "r+b") as fh:
                fh.truncate(end)

    def _reset(self) -> None:
        with self._lock:
            self._ends = self._data = None

    def _maps(self) -> tuple[np.ndarray, mmap.mmap | bytes]:
        # Plain mmap objects, not np.memmap: slicing an mmap yields bytes directly, and
        # np.memmap's per-item __getitem__ costs more than the copy.
        with self._lock:
            rows = self.rows
            if self._ends is None or self._ends.shape[0] < rows:
                if rows == 0:
                    return np.zeros(0, dtype="<u8"), b""
                with open(self.index_path, "rb") as fh:
                    index = mmap.mmap(fh.fileno(), rows * 8, access=mmap.ACCESS_READ)
                ends = np.frombuffer(index, dtype="<u8", count=rows)
                with open(self.data_path, "rb") as fh:
                    self._data = mmap.mmap(fh.fileno(), int(ends[-1]), access=mmap.ACCESS_READ)
                self._ends = ends
            return self._ends, self._data

    def lookup(self, positions: Sequence[int]) -> list[bytes]:
        ends, data = self._maps()
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and int(pos.max()) >= ends.shape[0]:
            raise LookupError("payload store is behind the bank; sync it first")
        stops = ends[pos].tolist()
        starts = np.where(pos > 0, ends[np.maximum(pos - 1, 0)], 0).tolist()
        return [data[a:b] for a, b in zip(starts, stops)]
