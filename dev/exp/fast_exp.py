"""Exponentials in the parallel kernels: libm's expf (math.exp) against parallel.fast_exp,
over 50,304 values (a row of logits), with arguments in [-80, 0] (all results normal)
and in [-160, 0] (half of them subnormal, as the 124M models' logits give), ms per row;
and fast_exp's error in ulps over its whole range.

    python dev/exp/fast_exp.py
"""
import argparse
import math
import time

import numpy as np
from numba import njit

from gptpy.parallel.kernels import EXP_MAX, EXP_MIN, fast_exp

argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()


@njit(fastmath=True)
def with_libm(out, x):
    s = np.float32(0)
    for i in range(x.size):
        e = math.exp(x[i]); out[i] = e; s += e
    return s


@njit(fastmath=True)
def with_fast_exp(out, x):
    s = np.float32(0)
    for i in range(x.size):
        e = fast_exp(x[i]); out[i] = e; s += e
    return s


rng = np.random.default_rng(0)
out = np.empty(50304, np.float32)
for low in (-80, -160):
    x = rng.uniform(low, 0, out.size).astype(np.float32)
    times = {f: [] for f in (with_libm, with_fast_exp)}
    for f in times:
        f(out, x)
    for _ in range(50):
        for f in times:
            start = time.perf_counter()
            f(out, x)
            times[f].append(time.perf_counter() - start)
    print(f"arguments in [{low}, 0]: " + ", ".join(f"{f.__name__} {1e3 * np.median(t):.4f} ms" for f, t in times.items()))
x = np.linspace(EXP_MIN, EXP_MAX, 2_000_001).astype(np.float32)
out = np.empty_like(x)
with_fast_exp(out, x)
exact = np.exp(x.astype(np.float64))
ulps = np.abs(out - exact) / np.spacing(exact.astype(np.float32))
print(f"fast_exp on [{EXP_MIN}, {EXP_MAX}]: max error {ulps.max():.2f} ulp, mean {ulps.mean():.2f}")
