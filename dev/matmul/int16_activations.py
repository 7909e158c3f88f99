"""Can numba's loops reach the integer multiply-adds (vpmaddwd on AVX2, VNNI on AVX-512)
for int8 weights? A decoding step's matvecs (12 layers' qkv, attproj, fc and fcproj,
and the LM head) with int8 weights three ways: today's (`weight_at`: each value widened
to float32, scaled, multiplied), and two with the activations quantized to int16 (one
scale per row) and int32 sums per block of 32 (the whole index; views of the block),
ms per step and the weights' GB/s, with the largest relative difference from today's.
Also whether LLVM emitted a pmaddwd for the int16 dot product alone.

    python dev/matmul/int16_activations.py [--threads K] [--rounds R]
"""
import re
import statistics
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.parallel.kernels import chunk
from gptpy.weights import quantize_int8, weight_at

args = devargs.parse(__doc__, [("--rounds", dict(type=int, default=15))])
K = args.threads


@njit(parallel=True, fastmath=True, error_model="numpy")
def widened(out, x, q, s, C, OC, K):
    for k in prange(K):
        lo, hi = chunk(OC, K, k)
        for o in range(lo, hi):
            acc = np.float32(0.0)
            for i in range(C):
                acc += x[i] * weight_at((q, s), o, i)
            out[o] = acc


@njit(fastmath=True, error_model="numpy")
def dot_i16(qb, xb):
    total = np.int32(0)
    for j in range(qb.shape[0]):
        total += np.int32(qb[j]) * np.int32(xb[j])  # numba types this product int64
    return total


@njit(parallel=True, fastmath=True, error_model="numpy")
def int16_blocks(out, xq, sx, q, s, C, OC, K):
    for k in prange(K):
        lo, hi = chunk(OC, K, k)
        for o in range(lo, hi):
            acc = np.float32(0.0)
            for b in range(C // 32):
                total = np.int32(0)
                for j in range(32):
                    total += np.int32(q[o, 32 * b + j]) * np.int32(xq[32 * b + j])
                acc += np.float32(total) * s[o, b]
            out[o] = acc * sx


@njit(parallel=True, fastmath=True, error_model="numpy")
def int16_views(out, xq, sx, q, s, C, OC, K):
    for k in prange(K):
        lo, hi = chunk(OC, K, k)
        for o in range(lo, hi):
            acc = np.float32(0.0)
            for b in range(C // 32):
                acc += np.float32(dot_i16(q[o, 32 * b:32 * b + 32], xq[32 * b:32 * b + 32])) * s[o, b]
            out[o] = acc * sx


rng = np.random.default_rng(0)
C = 768
mats = [quantize_int8((rng.standard_normal((OC, C)) * 0.02).astype(np.float32))
        for OC in (3 * C, C, 4 * C) * 12 + (50304,)]
x = rng.standard_normal(C).astype(np.float32)
sx = np.float32(np.abs(x).max() / 32767)
xq = np.rint(x / sx).astype(np.int16)
outs = [np.zeros(q.shape[0], np.float32) for q, _ in mats]
variants = {
    "widened (today)": lambda: [widened(o, x, q, s, C, q.shape[0], K) for (q, s), o in zip(mats, outs)],
    "int16, block index": lambda: [int16_blocks(o, xq, sx, q, s, C, q.shape[0], K) for (q, s), o in zip(mats, outs)],
    "int16, block views": lambda: [int16_views(o, xq, sx, q, s, C, q.shape[0], K) for (q, s), o in zip(mats, outs)],
}
results = {}
for name, run in variants.items():
    run()
    results[name] = np.concatenate(outs).copy()
times = {name: [] for name in variants}
for _ in range(args.rounds):
    for name, run in variants.items():
        start = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - start)
nbytes = sum(q.nbytes + s.nbytes for q, s in mats)
reference = results["widened (today)"]
for name in variants:
    seconds = statistics.median(times[name])
    difference = np.abs(results[name] - reference).max() / np.abs(reference).max()
    print(f"{name:20s} {1e3 * seconds:7.2f} ms  {nbytes / seconds / 1e9:5.1f} GB/s  max relative difference {difference:.1e}")
asm = next(iter(dot_i16.inspect_asm().values()))
print("pmaddwd in the int16 dot product:", bool(re.search(r"pmaddwd", asm)),
      "| 64-bit multiplies (vpmuldq/imulq):", len(re.findall(r"vpmuldq|imulq", asm)))
