"""A/B, interleaved: matmul_forward against the same tiles written over 1-D row views
(does indexing through views vectorize better?), T = 1, 2, 9, 64 on three weights.

    python dev/matmul/views.py [--model M] [--threads K]
"""
import time, numpy as np
from numba import njit, prange
from gptpy import checkpoint
from gptpy.parallel import chunk
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__)
K = args.threads
jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")

@jit
def views(out, inp, weight, bias, B, T, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        pairs_end = lo + (hi - lo) // 2 * 2
        T4 = T // 4 * 4
        for b in range(B):
            for o in range(lo, pairs_end, 2):
                b0 = np.float32(0.0) if bias is None else bias[o]
                b1 = np.float32(0.0) if bias is None else bias[o + 1]
                w0, w1 = weight[o], weight[o + 1]
                for t in range(0, T4, 4):
                    x0, x1, x2, x3 = inp[b, t], inp[b, t + 1], inp[b, t + 2], inp[b, t + 3]
                    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
                    for i in range(C):
                        a00 += x0[i] * w0[i]
                        a01 += x1[i] * w0[i]
                        a02 += x2[i] * w0[i]
                        a03 += x3[i] * w0[i]
                        a10 += x0[i] * w1[i]
                        a11 += x1[i] * w1[i]
                        a12 += x2[i] * w1[i]
                        a13 += x3[i] * w1[i]
                    out[b, t, o], out[b, t, o + 1] = a00 + b0, a10 + b1
                    out[b, t + 1, o], out[b, t + 1, o + 1] = a01 + b0, a11 + b1
                    out[b, t + 2, o], out[b, t + 2, o + 1] = a02 + b0, a12 + b1
                    out[b, t + 3, o], out[b, t + 3, o + 1] = a03 + b0, a13 + b1
            for o in range(lo, hi):
                b0 = np.float32(0.0) if bias is None else bias[o]
                wo = weight[o]
                for t in range(T4 if o < pairs_end else 0, T):
                    x = inp[b, t]
                    a0 = np.float32(0.0)
                    for i in range(C):
                        a0 += x[i] * wo[i]
                    out[b, t, o] = a0 + b0

p = checkpoint.load_checkpoint(args.model).params
kernel = lambda out, x, w, bias, B, T, C, OC, K: args.kernels.matmul_forward(out, x, w, bias, B, T, C, OC)
rng = np.random.default_rng(0)
cases = []
for T in (1, 2, 9, 64):
    for name, w, bias in (("lm", p["wte"], None), ("fc", p["fcw"][0], p["fcb"][0]), ("fcproj", p["fcprojw"][0], p["fcprojb"][0])):
        OC, C = w.shape
        x = rng.standard_normal((1, T, C), dtype=np.float32); out = np.zeros((1, T, OC), np.float32)
        cases.append((f"T={T} {name}", x, w, bias, out, T, C, OC))
for label, x, w, bias, out, T, C, OC in cases:
    res = {"kernel": [], "views": []}
    for f in (kernel, views): f(out, x, w, bias, 1, T, C, OC, K)
    for _ in range(7 if T < 64 else 3):
        for name, f in (("kernel", kernel), ("views", views)):
            t0 = time.perf_counter(); f(out, x, w, bias, 1, T, C, OC, K); res[name].append(time.perf_counter() - t0)
    k, v = np.median(res["kernel"]), np.median(res["views"])
    print(f"{label:12s} kernel {1e3*k:8.3f} ms  views {1e3*v:8.3f} ms  {2*T*C*OC/v/1e9:6.1f} GF  ratio {k/v:.2f}")
