"""Where each bank's derived files live, with one open store/index per bank per process."""

from __future__ import annotations

import threading
from pathlib import Path

from curator.bank.index import BankIndex
from curator.bank.payloads import PayloadStore
from curator.bank.store import EmbeddingStore


class BankFiles:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "banks"
        self._stores: dict[int, EmbeddingStore] = {}
        self._indexes: dict[int, BankIndex] = {}
        self._payloads: dict[int, PayloadStore] = {}
        self._lock = threading.Lock()

    def store(self, bank_id: int, dim: int) -> EmbeddingStore:
        with self._lock:
            store = self._stores.get(bank_id)
            if store is None:
                store = self._stores[bank_id] = EmbeddingStore(self.root / str(bank_id), dim)
            return store

    def payloads(self, bank_id: int) -> PayloadStore:
        with self._lock:
            store = self._payloads.get(bank_id)
            if store is None:
                store = self._payloads[bank_id] = PayloadStore(self.root / str(bank_id))
            return store

    def index(self, bank_id: int) -> BankIndex:
        with self._lock:
            index = self._indexes.get(bank_id)
            if index is None:
                index = self._indexes[bank_id] = BankIndex(self.root / str(bank_id))
            return index
