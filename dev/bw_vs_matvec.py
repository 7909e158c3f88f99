"""Bandwidth (a plain parallel read) and the LM-head matvec, interleaved in one run."""
import time, numpy as np
from numba import njit, prange
import checkpoint, model
kernels = model.load_backend("parallel", 2)

@njit(parallel=True, fastmath=True, cache=True)
def read_rows(a, K):
    n, C = a.shape; s = np.zeros(K, np.float32)
    for w in prange(K):
        lo = w * n // K; hi = (w + 1) * n // K
        tot = np.float32(0)
        for r in range(lo, hi):
            acc = np.float32(0)
            for i in range(C):
                acc += a[r, i]
            tot += acc
        s[w] = tot
    return s.sum()

wte = checkpoint.load_checkpoint("random_124M.bin").params["wte"]
big = np.random.default_rng(0).standard_normal((4 * 50304, 768), dtype=np.float32)  # 618 MB
x = np.ones((1, 1, 768), np.float32); out = np.zeros((1, 1, 50304), np.float32)
read_rows(big, 2); read_rows(wte, 2); kernels.matmul_forward(out, x, wte, None, 1, 1, 768, 50304)
res = {"read 618MB anon": [], "read wte": [], "matvec wte": []}
for _ in range(15):
    t0 = time.perf_counter(); read_rows(big, 2); res["read 618MB anon"].append(big.nbytes / (time.perf_counter() - t0))
    t0 = time.perf_counter(); read_rows(wte, 2); res["read wte"].append(wte.nbytes / (time.perf_counter() - t0))
    t0 = time.perf_counter(); kernels.matmul_forward(out, x, wte, None, 1, 1, 768, 50304); res["matvec wte"].append(wte.nbytes / (time.perf_counter() - t0))
for k, v in res.items(): print(f"{k:16s} median {np.median(v)/1e9:5.1f} GB/s  max {np.max(v)/1e9:5.1f}")
