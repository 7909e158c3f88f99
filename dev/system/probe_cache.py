"""Can a kernel that takes K as an argument be cached, and do its reductions vectorize?
A flat prange reduction, per-row reductions, and a reduction through a called function
over range(lo, hi), in GB/s on 500 MB of random floats.

    python dev/system/probe_cache.py [--threads K]
"""
import time, numpy as np
from numba import njit, prange
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
K = devargs.parse(__doc__).threads
@njit(parallel=True, fastmath=True, cache=True)
def with_k(a, K):
    n = a.size; s = np.zeros(K, np.float32)
    for w in prange(K):
        lo = w * n // K; hi = (w + 1) * n // K
        acc = np.float32(0)
        for i in range(lo, hi):
            acc += a[i]
        s[w] = acc
    return s.sum()
@njit(parallel=True, fastmath=True, cache=True)
def rows(a2, K):
    n = a2.shape[0]; C = a2.shape[1]; s = np.zeros(K, np.float32)
    for w in prange(K):
        lo = w * n // K; hi = (w + 1) * n // K
        tot = np.float32(0)
        for r in range(lo, hi):
            acc = np.float32(0)
            for i in range(C):
                acc += a2[r, i]
            tot += acc
        s[w] = tot
    return s.sum()
@njit(fastmath=True, cache=True)
def sum_range(a, lo, hi):
    acc = np.float32(0)
    for i in range(lo, hi):
        acc += a[i]
    return acc
@njit(parallel=True, fastmath=True, cache=True)
def via_call(a, K):
    n = a.size; s = np.zeros(K, np.float32)
    for w in prange(K):
        s[w] = sum_range(a, w * n // K, (w + 1) * n // K)
    return s.sum()
big = np.random.default_rng(0).standard_normal(125_000_000, dtype=np.float32)
for f, arg in [(with_k, big), (rows, big.reshape(-1, 1000)), (via_call, big)]:
    f(arg, K); ts=[]
    for _ in range(5):
        t0=time.perf_counter(); f(arg, K); ts.append(time.perf_counter()-t0)
    print(f.__name__, f"{big.nbytes/np.median(ts)/1e9:.1f} GB/s")
t0=time.perf_counter(); big.sum(); print("numpy sum 1 thread", f"{big.nbytes/(time.perf_counter()-t0)/1e9:.1f} GB/s")
