"""The T = 1 path of matmul_forward: which inner loop reads the weights at bandwidth?
matmul_forward and four variants on the LM head, against a plain read, in GB/s.

    python dev/matmul/matvec.py [--model M] [--threads K]
"""
import time, numpy as np
from numba import njit, prange
from gptpy import checkpoint
from gptpy.parallel import chunk
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__)
kernels, K = args.kernels, args.threads
jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")

@jit
def one_row_3d(out, inp, weight, bias, B, T, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for t in range(T):
                for o in range(lo, hi):
                    a0 = np.float32(0.0)
                    for i in range(C):
                        a0 += inp[b, t, i] * weight[o, i]
                    out[b, t, o] = a0

@jit
def two_rows_1d(out, inp, weight, bias, B, T, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for t in range(T):
                x = inp[b, t]
                o = lo
                while o + 2 <= hi:
                    w0 = weight[o]; w1 = weight[o + 1]
                    a0 = a1 = np.float32(0.0)
                    for i in range(C):
                        a0 += x[i] * w0[i]
                        a1 += x[i] * w1[i]
                    out[b, t, o] = a0; out[b, t, o + 1] = a1
                    o += 2

@jit
def four_rows_1d(out, inp, weight, bias, B, T, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for t in range(T):
                x = inp[b, t]
                o = lo
                while o + 4 <= hi:
                    w0 = weight[o]; w1 = weight[o + 1]; w2 = weight[o + 2]; w3 = weight[o + 3]
                    a0 = a1 = a2 = a3 = np.float32(0.0)
                    for i in range(C):
                        a0 += x[i] * w0[i]
                        a1 += x[i] * w1[i]
                        a2 += x[i] * w2[i]
                        a3 += x[i] * w3[i]
                    out[b, t, o] = a0; out[b, t, o + 1] = a1; out[b, t, o + 2] = a2; out[b, t, o + 3] = a3
                    o += 4

@jit
def one_row_1d(out, inp, weight, bias, B, T, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for t in range(T):
                x = inp[b, t]
                for o in range(lo, hi):
                    wr = weight[o]
                    a0 = np.float32(0.0)
                    for i in range(C):
                        a0 += x[i] * wr[i]
                    out[b, t, o] = a0

@jit
def read_rows(a, K):
    n, C = a.shape; s = np.zeros(K, np.float32)
    for w in prange(K):
        lo, hi = chunk(n, K, w)
        tot = np.float32(0)
        for r in range(lo, hi):
            acc = np.float32(0)
            for i in range(C):
                acc += a[r, i]
            tot += acc
        s[w] = tot
    return s.sum()

wte = checkpoint.load_checkpoint(args.model).params["wte"]
x = np.random.default_rng(1).standard_normal((1, 1, 768), dtype=np.float32); out = np.zeros((1, 1, 50304), np.float32)
ref = (wte.astype(np.float64) @ x[0, 0].astype(np.float64))
fs = {"kernel": lambda: kernels.matmul_forward(out, x, wte, None, 1, 1, 768, 50304)}
for f in (one_row_3d, one_row_1d, two_rows_1d, four_rows_1d):
    fs[f.__name__] = (lambda f=f: f(out, x, wte, None, 1, 1, 768, 50304, K))
fs["read"] = lambda: read_rows(wte, K)
res = {k: [] for k in fs}
for f in fs.values(): f()
for _ in range(12):
    for k, f in fs.items():
        t0 = time.perf_counter(); f(); res[k].append(wte.nbytes / (time.perf_counter() - t0))
        if k not in ("read",): assert np.abs(out[0, 0] - ref).max() < 1e-3, k
for k, v in res.items(): print(f"{k:14s} median {np.median(v)/1e9:5.1f} GB/s")
