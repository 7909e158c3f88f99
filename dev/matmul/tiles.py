"""Which tile for the matmul, decode to prefill? Four blockings over output rows and
positions (K passed in, so numba can cache them), on the LM head's and fcproj's shapes
at T = 1 .. 256 of random weights: ms, GB/s of weights, GFLOP/s.

    python dev/matmul/tiles.py [--threads K]
"""
import time
import numpy as np
from numba import njit, prange
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
K = devargs.parse(__doc__).threads

@njit(parallel=True, fastmath=True, cache=True)
def mm_1o(out, inp, weight, bias, BT, C, OC, K):
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        for o in range(lo, hi):
            for t in range(BT):
                acc = np.float32(0)
                for i in range(C):
                    acc += inp[t, i] * weight[o, i]
                out[t, o] = acc + bias[o]

@njit(parallel=True, fastmath=True, cache=True)
def mm_1o4t(out, inp, weight, bias, BT, C, OC, K):
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        for o in range(lo, hi):
            t = 0
            while t + 4 <= BT:
                a0 = a1 = a2 = a3 = np.float32(0)
                for i in range(C):
                    wi = weight[o, i]
                    a0 += inp[t, i] * wi; a1 += inp[t + 1, i] * wi
                    a2 += inp[t + 2, i] * wi; a3 += inp[t + 3, i] * wi
                out[t, o] = a0 + bias[o]; out[t + 1, o] = a1 + bias[o]
                out[t + 2, o] = a2 + bias[o]; out[t + 3, o] = a3 + bias[o]
                t += 4
            for tt in range(t, BT):
                acc = np.float32(0)
                for i in range(C):
                    acc += inp[tt, i] * weight[o, i]
                out[tt, o] = acc + bias[o]

@njit(parallel=True, fastmath=True, cache=True)
def mm_2o4t(out, inp, weight, bias, BT, C, OC, K):
    for w in prange(K):
        lo = w * OC // K; hi = (w + 1) * OC // K
        o = lo
        while o < hi:
            if o + 2 <= hi:
                t = 0
                while t + 4 <= BT:
                    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0)
                    for i in range(C):
                        u = weight[o, i]; v = weight[o + 1, i]
                        x0 = inp[t, i]; x1 = inp[t + 1, i]; x2 = inp[t + 2, i]; x3 = inp[t + 3, i]
                        a0 += x0 * u; a1 += x1 * u; a2 += x2 * u; a3 += x3 * u
                        b0 += x0 * v; b1 += x1 * v; b2 += x2 * v; b3 += x3 * v
                    out[t, o] = a0 + bias[o]; out[t + 1, o] = a1 + bias[o]
                    out[t + 2, o] = a2 + bias[o]; out[t + 3, o] = a3 + bias[o]
                    out[t, o + 1] = b0 + bias[o + 1]; out[t + 1, o + 1] = b1 + bias[o + 1]
                    out[t + 2, o + 1] = b2 + bias[o + 1]; out[t + 3, o + 1] = b3 + bias[o + 1]
                    t += 4
                for oo in range(o, o + 2):
                    for tt in range(t, BT):
                        acc = np.float32(0)
                        for i in range(C):
                            acc += inp[tt, i] * weight[oo, i]
                        out[tt, oo] = acc + bias[oo]
                o += 2
            else:
                for tt in range(BT):
                    acc = np.float32(0)
                    for i in range(C):
                        acc += inp[tt, i] * weight[o, i]
                    out[tt, o] = acc + bias[o]
                o += 1

@njit(parallel=True, fastmath=True, cache=True)
def mm_4o2t(out, inp, weight, bias, BT, C, OC, K):
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
            for oo in range(o, o + 4):
                for tt in range(t, BT):
                    acc = np.float32(0)
                    for i in range(C):
                        acc += inp[tt, i] * weight[oo, i]
                    out[tt, oo] = acc + bias[oo]
            o += 4
        for oo in range(o, hi):
            for t in range(BT):
                acc = np.float32(0)
                for i in range(C):
                    acc += inp[t, i] * weight[oo, i]
                out[t, oo] = acc + bias[oo]

def bench(f, *args, reps=5):
    f(*args); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(*args); ts.append(time.perf_counter() - t0)
    return np.median(ts)

rng = np.random.default_rng(0)
for C, OC in [(768, 50304), (3072, 768)]:
    W = rng.standard_normal((OC, C), dtype=np.float32); bias = np.zeros(OC, np.float32)
    for T in [1, 2, 9, 64, 256]:
        x = rng.standard_normal((T, C), dtype=np.float32); out = np.zeros((T, OC), np.float32)
        ref = x.astype(np.float64) @ W.T.astype(np.float64)
        line = f"C={C} OC={OC} T={T:3d}"
        for f in [mm_1o, mm_1o4t, mm_2o4t, mm_4o2t]:
            tm = bench(f, out, x, W, bias, T, C, OC, K, reps=5 if T < 100 else 2)
            assert np.abs(out - ref).max() < 1e-3
            line += f" | {f.__name__} {tm*1e3:7.2f} ms {W.nbytes/tm/1e9:5.1f} GB/s {2*T*C*OC/tm/1e9:5.0f} GF"
        print(line, flush=True)
