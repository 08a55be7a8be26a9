"""Feistel proposal: a bijection per (seed, epoch), epoch-wise coverage, speed."""

import time

import numpy as np
import pytest

from curator.curation.proposal import epoch_permutation, pool_positions


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 4097, 100_003])
def test_bijection(n: int) -> None:
    for seed, epoch in [(0, 0), (42, 3), (-5, 1)]:
        out = epoch_permutation(n, seed, epoch)(np.arange(n, dtype=np.int64))
        assert out.dtype == np.int64
        assert np.array_equal(np.sort(out), np.arange(n))


def test_orders_depend_on_epoch_and_seed() -> None:
    x = np.arange(1000)
    a = epoch_permutation(1000, 1, 0)(x)
    assert not np.array_equal(a, epoch_permutation(1000, 1, 1)(x))
    assert not np.array_equal(a, epoch_permutation(1000, 2, 0)(x))
    assert np.array_equal(a, epoch_permutation(1000, 1, 0)(x))  # deterministic
    assert not np.array_equal(a, x)  # actually shuffles


def test_rejects_out_of_range_offsets() -> None:
    perm = epoch_permutation(10, 0, 0)
    with pytest.raises(ValueError):
        perm(np.array([10]))
    with pytest.raises(ValueError):
        perm(np.array([-1]))


def test_consecutive_ranges_cover_epoch_once() -> None:
    n = 1000
    parts = [pool_positions(s, c, n, seed=9) for s, c in [(0, 300), (300, 300), (600, 400)]]
    assert [len(p) for p in parts] == [300, 300, 400]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    # the next epoch is a different order over the same set
    nxt = pool_positions(n, n, n, seed=9)
    assert np.array_equal(np.sort(nxt), np.arange(n))
    assert not np.array_equal(nxt, np.concatenate(parts))


def test_straddling_range_drops_repeats_keeping_order() -> None:
    n = 10
    out = pool_positions(5, 10, n, seed=3)
    first_epoch = pool_positions(5, 5, n, seed=3)
    second_epoch = pool_positions(10, 5, n, seed=3)
    assert len(np.unique(out)) == len(out)
    assert np.array_equal(out[:5], first_epoch)
    expected_tail = [p for p in second_epoch if p not in set(first_epoch.tolist())]
    assert out[5:].tolist() == expected_tail
    wide = pool_positions(0, 25, n, seed=3)
    assert np.array_equal(np.sort(wide), np.arange(n))
    assert pool_positions(0, 3, 1, seed=0).tolist() == [0]
    assert len(pool_positions(7, 0, 5, seed=0)) == 0


def test_speed_large_bank() -> None:
    t0 = time.perf_counter()
    for i in range(50):
        out = pool_positions(i * 2048, 2048, 1_000_000, seed=11)
    elapsed = time.perf_counter() - t0
    assert len(np.unique(out)) == 2048 and out.max() < 1_000_000
    assert elapsed < 2.0, elapsed


def test_cached_full_permutation_matches_the_feistel_map():
    from curator.curation.proposal import _full_permutation, epoch_permutation, pool_positions

    n, seed = 5003, 11
    full = _full_permutation(n, seed, 2)
    assert sorted(full.tolist()) == list(range(n))
    np.testing.assert_array_equal(full, epoch_permutation(n, seed, 2)(np.arange(n)))
    # pools straddling an epoch boundary use both epochs' maps, repeats dropped
    got = pool_positions(2 * n - 7, 20, n, seed)
    expect = np.concatenate([epoch_permutation(n, seed, 1)(np.arange(n - 7, n)),
                             epoch_permutation(n, seed, 2)(np.arange(13))])
    _, first = np.unique(expect, return_index=True)
    np.testing.assert_array_equal(got, expect[np.sort(first)])
