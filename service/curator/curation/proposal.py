"""Epoch-wise uniform proposal without a stored permutation.

Every API replica shares one atomic counter per run; counter position c maps to bank
position perm_{epoch}(c % N) with epoch = c // N. The permutation is a keyed Feistel
bijection with cycle-walking, so it costs O(1) memory per run and is identical on every
replica given (seed, epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
ROUNDS = 6


def _splitmix64(x: int) -> int:
    """Scalar splitmix64 step on python ints (used to derive round keys)."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _round_fn(right: np.ndarray, key: np.uint64, mask: np.uint64) -> np.ndarray:
    """Keyed integer hash (splitmix64 finaliser of right ^ key), truncated to a half."""
    h = right ^ key
    h = (h ^ (h >> _S30)) * _C1  # uint64 arrays wrap silently: intended
    h = (h ^ (h >> _S27)) * _C2
    h ^= h >> _S31
    return h & mask


@dataclass(frozen=True)
class FeistelPermutation:
    """A keyed bijection of [0, n); call it on an int64 array of offsets."""

    n: int
    half_bits: int
    keys: tuple[int, ...]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half_bits)
        mask = np.uint64((1 << self.half_bits) - 1)
        left, right = x >> shift, x & mask
        for key in self.keys:
            left, right = right, left ^ _round_fn(right, np.uint64(key), mask)
        return (left << shift) | right

    def __call__(self, offsets: np.ndarray) -> np.ndarray:
        x = np.asarray(offsets, dtype=np.int64)
        if x.size and (int(x.min()) < 0 or int(x.max()) >= self.n):
            raise ValueError(f"offsets must lie in [0, {self.n})")
        n = np.uint64(self.n)
        y = self._encrypt(x.astype(np.uint64))
        # Cycle-walk: re-encrypt only the elements that landed outside [0, n). The
        # domain is < 4n, so this ends after a few passes on average.
        todo = np.flatnonzero(y >= n)
        while todo.size:
            y[todo] = self._encrypt(y[todo])
            todo = todo[y[todo] >= n]
        return y.astype(np.int64)


def epoch_permutation(n: int, seed: int, epoch: int) -> FeistelPermutation:
    """The permutation of [0, n) used for `epoch` of a run keyed by `seed`."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if epoch < 0:
        raise ValueError("epoch must be >= 0")
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2  # balanced Feistel needs an even number of bits
    base = _splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64))
    keys = tuple(_splitmix64(base + i) for i in range(ROUNDS))
    return FeistelPermutation(n=n, half_bits=bits // 2, keys=keys)


# Banks up to this size keep each epoch's whole permutation in memory (int32, 4 MB per
# million problems): computed once per epoch, then a pool is a slice. Derived from
# (n, seed, epoch), identical in every process, so nothing per run is stored anywhere.
FULL_PERMUTATION_MAX_N = 4_000_000


@lru_cache(maxsize=16)
def _full_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    perm = epoch_permutation(n, seed, epoch)(np.arange(n, dtype=np.int64))
    out = perm.astype(np.int32 if n < 2**31 else np.int64)
    out.flags.writeable = False
    return out


def _epoch_positions(n: int, seed: int, epoch: int, offsets: np.ndarray) -> np.ndarray:
    if n <= FULL_PERMUTATION_MAX_N and offsets.size and (
            offsets[-1] - offsets[0] + 1 == offsets.size):  # a contiguous run: slice
        full = _full_permutation(n, seed, epoch)
        return full[int(offsets[0]):int(offsets[-1]) + 1].astype(np.int64)
    return epoch_permutation(n, seed, epoch)(offsets)


def pool_positions(start: int, count: int, n: int, seed: int) -> np.ndarray:
    """Bank positions for counter positions start .. start+count-1.

    When the range straddles an epoch boundary a bank position can occur twice (once
    per epoch); repeats are dropped keeping the first occurrence and the order, so the
    result may be shorter than `count` and the caller advances the counter further.
    """
    if start < 0 or count < 0:
        raise ValueError("start and count must be >= 0")
    if n < 1:
        raise ValueError("n must be >= 1")
    counters = np.arange(start, start + count, dtype=np.int64)
    epochs, offsets = np.divmod(counters, n)
    positions = np.empty(count, dtype=np.int64)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        positions[sel] = _epoch_positions(n, seed, int(epoch), offsets[sel])
    _, first = np.unique(positions, return_index=True)
    if first.size == positions.size:
        return positions
    return positions[np.sort(first)]


def claim_pool(start: int, m: int, n: int, seed: int) -> tuple[np.ndarray, int]:
    """The m distinct bank positions a claim at counter `start` gets, and how far it
    advances the counter: past m when repeats at an epoch boundary were dropped and the
    pool was topped up from the following counters. Requires m <= n."""
    if m > n:
        raise ValueError("a pool cannot hold more than the bank")
    positions = pool_positions(start, m, n, seed)
    used = m
    while positions.size < m:
        more = pool_positions(start + used, m - positions.size, n, seed)
        used += m - positions.size
        positions = np.concatenate([positions, more[~np.isin(more, positions)]])
    return positions, used
