"""Prefill's attention at T = 512 (124M: 12 heads of 64): the whole kernel; pass 1 (the
scores) alone, by dot products (a horizontal sum each) and by keys 4 queries at a time
(parallel.kernels._scores_by_keys); pass 4 (values) alone, 4 queries at a time; ms per
layer, interleaved, medians.

    python dev/attention/prefill.py [--threads K] [--T T]
"""
import math
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.parallel.kernels import _scores_by_keys, _values_by_queries, chunk

args = devargs.parse(__doc__, [("--T", dict(type=int, default=512))])
K, T, C, NH = args.threads, args.T, 768, 12
hs = C // NH
scale = np.float32(1.0 / math.sqrt(hs))


@njit(parallel=True, fastmath=True, error_model="numpy")
def scores_by_dots(preatt, inp, B, T, C, NH, K):
    Tq = preatt.shape[2]
    hs = C // NH
    for w in prange(K):
        lo, hi = chunk(B * NH * Tq, K, w)
        for tq in range(Tq):
            base = tq
            h0, h1 = max(0, -((base - lo) // Tq)), min(NH, -((base - hi) // Tq))
            t = T - Tq + tq
            for t2 in range(t + 1):
                for h in range(h0, h1):
                    q = inp[0, t, h * hs:(h + 1) * hs]
                    k = inp[0, t2, C + h * hs:C + (h + 1) * hs]
                    val = np.float32(0.0)
                    for i in range(hs):
                        val += q[i] * k[i]
                    preatt[0, h, tq, t2] = val * np.float32(0.125)


@njit(parallel=True)
def by_keys(preatt, inp, B, T, C, NH, K, scale):
    for w in prange(K):
        lo, hi = chunk(B * NH * preatt.shape[2], K, w)
        _scores_by_keys(preatt, inp, B, T, C, NH, lo, hi, scale)


@njit(parallel=True)
def by_queries(out, att, inp, B, T, C, NH, K):
    for w in prange(K):
        lo, hi = chunk(B * NH * att.shape[2], K, w)
        _values_by_queries(out, att, inp, B, T, C, NH, lo, hi)


rng = np.random.default_rng(0)
inp = rng.standard_normal((1, T, 3 * C), dtype=np.float32)
out = np.empty((1, T, C), np.float32)
preatt, att = (np.zeros((1, NH, T, T), np.float32) for _ in range(2))
runs = {"attention_forward": lambda: args.kernels.attention_forward(out, preatt, att, inp, 1, T, C, NH),
        "pass 1 by dots": lambda: scores_by_dots(preatt, inp, 1, T, C, NH, K),
        "pass 1 by keys": lambda: by_keys(preatt, inp, 1, T, C, NH, K, scale),
        "pass 4 by queries": lambda: by_queries(out, att, inp, 1, T, C, NH, K)}
times = {name: [] for name in runs}
for run in runs.values():
    run()
for _ in range(9):
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - start)
print(f"T = {T}, {K} workers: " + ", ".join(f"{name} {1e3 * np.median(t):.2f} ms" for name, t in times.items()))
