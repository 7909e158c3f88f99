"""The machine's memory read bandwidth, as the weight reads of decoding see it: every
core reading its share of an array much larger than the caches, vectorized."""

import time

import numpy as np
from numba import get_num_threads, njit, prange

from gptpy.parallel import chunk


@njit(parallel=True, fastmath=True, cache=True)
def _read(a, K):
    """Sums a (n, C), each worker its contiguous share of the rows: each row in float32
    (vectorized, exact for a row of ones), the rows' sums in float64 (exact)."""
    sums = np.zeros(K, dtype=np.float64)
    for w in prange(K):
        lo, hi = chunk(a.shape[0], K, w)
        total = 0.0
        for r in range(lo, hi):
            row = np.float32(0.0)
            for i in range(a.shape[1]):
                row += a[r, i]
            total += row
        sums[w] = total
    return sums.sum()


def read_bandwidth(nbytes=640 << 20, rounds=9):
    """Median bytes per second of `rounds` full reads of a fresh nbytes array, with as many
    workers as numba's current thread count."""
    a = ones(nbytes)
    read_seconds(a)  # compile or load, and fault the pages in
    return a.nbytes / float(np.median([read_seconds(a) for _ in range(rounds)]))


def ones(nbytes):
    """An array of about nbytes for read_seconds: ones (zeros would map the kernel's one
    shared zero page, read from cache)."""
    return np.ones((nbytes // 4096, 1024), dtype=np.float32)


def read_seconds(a):
    """Seconds of one full read of `a` (ones()) by numba's current thread count; the sum
    is checked: a read that skipped part of the array fails."""
    start = time.perf_counter()
    total = _read(a, get_num_threads())
    seconds = time.perf_counter() - start
    if total != a.size:
        raise AssertionError(f"the read summed {total} ones of {a.size}: it did not read the whole array")
    return seconds
