"""Which way of writing attention's inner loops does LLVM vectorize? Decode, one layer
at context 513: 3-D indexing with offsets against 1-D views of one head, in us.

    python dev/attention/inner.py [--threads K]
"""
import math, time, numpy as np
from numba import njit, prange
from gptpy.parallel import chunk
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
K = devargs.parse(__doc__).threads
jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")

@jit
def pass1_index3d(pre, inp, T, C, NH, K):   # as in the kernel
    hs = C // NH
    for w in prange(K):
        lo, hi = chunk(NH, K, w)
        for t2 in range(T):
            for h in range(lo, hi):
                val = np.float32(0.0)
                for i in range(hs):
                    val += inp[0, T - 1, h * hs + i] * inp[0, t2, C + h * hs + i]
                pre[h, t2] = val

@jit
def pass1_views(pre, inp, T, C, NH, K):     # 1-D views of one head's query and key
    hs = C // NH
    for w in prange(K):
        lo, hi = chunk(NH, K, w)
        for t2 in range(T):
            for h in range(lo, hi):
                q = inp[0, T - 1, h * hs:(h + 1) * hs]
                k = inp[0, t2, C + h * hs:C + (h + 1) * hs]
                val = np.float32(0.0)
                for i in range(hs):
                    val += q[i] * k[i]
                pre[h, t2] = val

@jit
def pass4_index3d(out, att, inp, T, C, NH, K):
    hs = C // NH
    for w in prange(K):
        lo, hi = chunk(NH, K, w)
        for t2 in range(T):
            for h in range(lo, hi):
                a = att[h, t2]
                for i in range(hs):
                    out[h * hs + i] += a * inp[0, t2, 2 * C + h * hs + i]

@jit
def pass4_views(out, att, inp, T, C, NH, K):
    hs = C // NH
    for w in prange(K):
        lo, hi = chunk(NH, K, w)
        for t2 in range(T):
            for h in range(lo, hi):
                a = att[h, t2]
                o = out[h * hs:(h + 1) * hs]
                v = inp[0, t2, 2 * C + h * hs:2 * C + (h + 1) * hs]
                for i in range(hs):
                    o[i] += a * v[i]

@jit
def exps(att, pre, T, NH, K):
    for w in prange(K):
        lo, hi = chunk(NH, K, w)
        for h in range(lo, hi):
            for t2 in range(T):
                att[h, t2] = math.exp(pre[h, t2])

C, NH, T = 768, 12, 513
rng = np.random.default_rng(0)
inp = rng.standard_normal((1, T, 3 * C), dtype=np.float32)
pre = np.zeros((NH, T), np.float32); att = rng.random((NH, T), dtype=np.float32); out = np.zeros(C, np.float32)
cases = {"pass1 index3d": lambda: pass1_index3d(pre, inp, T, C, NH, K), "pass1 views": lambda: pass1_views(pre, inp, T, C, NH, K),
         "pass4 index3d": lambda: pass4_index3d(out, att, inp, T, C, NH, K), "pass4 views": lambda: pass4_views(out, att, inp, T, C, NH, K),
         "exp": lambda: exps(att, pre, T, NH, K)}
for f in cases.values(): f()
res = {k: [] for k in cases}
for _ in range(50):
    for k, f in cases.items():
        t0 = time.perf_counter(); f(); res[k].append(time.perf_counter() - t0)
for k, v in res.items(): print(f"{k:14s} {1e6*np.median(v):8.1f} us")
