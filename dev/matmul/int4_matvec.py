"""Decoding's integer matvec (weights.dot_blocks_int16) in cache: a 2304 x 768 weight
(the qkv matmul's; 2.0 MB in int8, 1.0 MB in int4) times one position, many times over,
for int8 and int4: blocks of 32 a second and the GB/s of weights read. Where int4 reads
fewer bytes but runs fewer blocks a second than int8, its decode is bound by its
instructions (the unpacking), not by memory.

    python dev/matmul/int4_matvec.py [--threads K]
"""
import statistics
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.weights import quantize_int4, quantize_int8

args = devargs.parse(__doc__)
rng = np.random.default_rng(0)
OC, C = 2304, 768
w = rng.standard_normal((OC, C)).astype(np.float32)
x = rng.standard_normal((1, 1, C)).astype(np.float32)
out = np.zeros((1, 1, OC), np.float32)
for name, weight in (("int8", quantize_int8(w)), ("int4", quantize_int4(w))):
    nbytes = weight[0].nbytes + weight[1].nbytes
    args.kernels.matmul_forward(out, x, weight, None, 1, 1, C, OC)
    times = []
    for _ in range(300):
        start = time.perf_counter()
        args.kernels.matmul_forward(out, x, weight, None, 1, 1, C, OC)
        times.append(time.perf_counter() - start)
    s = statistics.median(times)
    print(f"{name}: {nbytes / 1e6:.2f} MB in cache, {1e6 * s:.1f} us a matvec: {OC * C / 32 / s / 1e9:.2f} G blocks/s, "
          f"{nbytes / s / 1e9:.1f} GB/s (K={args.threads}, the pool's fork and join included)")
