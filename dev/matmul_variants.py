"""Experiment: matmul blockings for decode (T=1, memory-bound) and prefill (compute-bound)."""
import time, sys
import numpy as np
from numba import njit, prange, get_num_threads, set_num_threads

@njit(parallel=True, fastmath=True, cache=True)
def read_bw(a):
    K = get_num_threads(); n = a.size; s = np.zeros(K, np.float32)
    for w in prange(K):
        lo = w * n // K; hi = (w + 1) * n // K
        acc = np.float32(0)
        for i in range(lo, hi):
            acc += a[i]
        s[w] = acc
    return s.sum()

@njit(parallel=True, fastmath=True, cache=True)
def mm_1x1(out, inp, weight, bias, BT, C, OC):
    K = get_num_threads()
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        for t in range(BT):
            for o in range(lo, hi):
                acc = bias[o]
                for i in range(C):
                    acc += inp[t, i] * weight[o, i]
                out[t, o] = acc

@njit(parallel=True, fastmath=True, cache=True)
def mm_4o(out, inp, weight, bias, BT, C, OC):
    K = get_num_threads()
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        o = lo
        while o + 4 <= hi:
            for t in range(BT):
                a0 = a1 = a2 = a3 = np.float32(0)
                for i in range(C):
                    x = inp[t, i]
                    a0 += x * weight[o, i]; a1 += x * weight[o + 1, i]
                    a2 += x * weight[o + 2, i]; a3 += x * weight[o + 3, i]
                out[t, o] = a0 + bias[o]; out[t, o + 1] = a1 + bias[o + 1]
                out[t, o + 2] = a2 + bias[o + 2]; out[t, o + 3] = a3 + bias[o + 3]
            o += 4
        for oo in range(o, hi):
            for t in range(BT):
                acc = bias[oo]
                for i in range(C):
                    acc += inp[t, i] * weight[oo, i]
                out[t, oo] = acc

@njit(parallel=True, fastmath=True, cache=True)
def mm_4o2t(out, inp, weight, bias, BT, C, OC):
    K = get_num_threads()
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        o = lo
        while o + 4 <= hi:
            t = 0
            while t + 2 <= BT:
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0)
                for i in range(C):
                    x = inp[t, i]; y = inp[t + 1, i]
                    w0 = weight[o, i]; w1 = weight[o + 1, i]; w2 = weight[o + 2, i]; w3 = weight[o + 3, i]
                    a0 += x * w0; a1 += x * w1; a2 += x * w2; a3 += x * w3
                    b0 += y * w0; b1 += y * w1; b2 += y * w2; b3 += y * w3
                out[t, o] = a0 + bias[o]; out[t, o + 1] = a1 + bias[o + 1]
                out[t, o + 2] = a2 + bias[o + 2]; out[t, o + 3] = a3 + bias[o + 3]
                out[t + 1, o] = b0 + bias[o]; out[t + 1, o + 1] = b1 + bias[o + 1]
                out[t + 1, o + 2] = b2 + bias[o + 2]; out[t + 1, o + 3] = b3 + bias[o + 3]
                t += 2
            for tt in range(t, BT):
                a0 = a1 = a2 = a3 = np.float32(0)
                for i in range(C):
                    x = inp[tt, i]
                    a0 += x * weight[o, i]; a1 += x * weight[o + 1, i]
                    a2 += x * weight[o + 2, i]; a3 += x * weight[o + 3, i]
                out[tt, o] = a0 + bias[o]; out[tt, o + 1] = a1 + bias[o + 1]
                out[tt, o + 2] = a2 + bias[o + 2]; out[tt, o + 3] = a3 + bias[o + 3]
            o += 4
        for oo in range(o, hi):
            for t in range(BT):
                acc = bias[oo]
                for i in range(C):
                    acc += inp[t, i] * weight[oo, i]
                out[t, oo] = acc

@njit(parallel=True, fastmath=True, cache=True)
def mm_8o(out, inp, weight, bias, BT, C, OC):
    K = get_num_threads()
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        o = lo
        while o + 8 <= hi:
            for t in range(BT):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
                for i in range(C):
                    x = inp[t, i]
                    a0 += x * weight[o, i]; a1 += x * weight[o + 1, i]
                    a2 += x * weight[o + 2, i]; a3 += x * weight[o + 3, i]
                    a4 += x * weight[o + 4, i]; a5 += x * weight[o + 5, i]
                    a6 += x * weight[o + 6, i]; a7 += x * weight[o + 7, i]
                out[t, o] = a0 + bias[o]; out[t, o + 1] = a1 + bias[o + 1]
                out[t, o + 2] = a2 + bias[o + 2]; out[t, o + 3] = a3 + bias[o + 3]
                out[t, o + 4] = a4 + bias[o + 4]; out[t, o + 5] = a5 + bias[o + 5]
                out[t, o + 6] = a6 + bias[o + 6]; out[t, o + 7] = a7 + bias[o + 7]
            o += 8
        for oo in range(o, hi):
            for t in range(BT):
                acc = bias[oo]
                for i in range(C):
                    acc += inp[t, i] * weight[oo, i]
                out[t, oo] = acc

def bench(f, *args, reps=5):
    f(*args); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(*args); ts.append(time.perf_counter() - t0)
    return np.median(ts)

rng = np.random.default_rng(0)
big = rng.standard_normal(125_000_000, dtype=np.float32)
t = bench(read_bw, big); print(f"read bandwidth: {big.nbytes / t / 1e9:.1f} GB/s ({get_num_threads()} threads)")
C, OC = 768, 50304
W = rng.standard_normal((OC, C), dtype=np.float32); bias = np.zeros(OC, np.float32)
for T in [1, 2, 9, 64]:
    x = rng.standard_normal((T, C), dtype=np.float32); out = np.zeros((T, OC), np.float32)
    ref = x.astype(np.float64) @ W.T.astype(np.float64)
    for f in [mm_1x1, mm_4o, mm_4o2t, mm_8o]:
        tm = bench(f, out, x, W, bias, T, C, OC)
        err = np.abs(out - ref).max()
        print(f"T={T:3d} {f.__name__:8s} {tm*1e3:8.2f} ms  {W.nbytes/tm/1e9:6.1f} GB/s  {2*T*C*OC/tm/1e9:6.1f} GFLOP/s  err {err:.1e}")
