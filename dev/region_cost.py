"""What does a parallel region cost on tiny work, with prange(2), prange(1), and none?"""
import time, statistics, numpy as np
from numba import njit, prange
import serial
from parallel.kernels import _residual_forward
a = np.ones(768, np.float32); b = np.ones(768, np.float32); o = np.zeros(768, np.float32)
cases = {"prange(K=2)": lambda: _residual_forward(o, a, b, 768, 2), "prange(K=1)": lambda: _residual_forward(o, a, b, 768, 1),
         "serial kernel": lambda: serial.residual_forward(o, a, b, 768)}
for f in cases.values(): f()
res = {k: [] for k in cases}
for _ in range(20):
    for k, f in cases.items():
        t0 = time.perf_counter()
        for _ in range(1000): f()
        res[k].append((time.perf_counter() - t0) / 1000)
for k, v in res.items(): print(f"{k:14s} {1e6*statistics.median(v):6.2f} us per call")
