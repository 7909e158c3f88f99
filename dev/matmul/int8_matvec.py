"""int8 weights at T = 1: which scale layout and which inner loop decode fastest, and how
far from float32 does each put the products? Every matvec of one 124M decoding step
(12 layers' qkv, attproj, fc, fcproj, and the LM head), int8 variants against float32
and bfloat16, interleaved, median of rounds, ms per step and GB/s of weight bytes.

    python dev/matmul/int8_matvec.py [--threads K] [--rounds R]
"""
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.parallel.kernels import chunk
from gptpy.weights import weight_at

args = devargs.parse(__doc__, [("--rounds", dict(type=int, default=15))])
K = args.threads
jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")


@jit
def generic(out, x, weight, C, OC, K):
    """What matmul_forward's T = 1 loop does: weight_at per value."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for o in range(lo, hi):
            a = np.float32(0.0)
            for i in range(C):
                a += x[i] * weight_at(weight, o, i)
            out[o] = a


@jit
def row_factored(out, x, q, s, C, OC, K):
    """Per-row scale taken out of the sum: int8 -> float, one FMA per value."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for o in range(lo, hi):
            a = np.float32(0.0)
            for i in range(C):
                a += x[i] * np.float32(q[o, i])
            out[o] = a * s[o, 0]


@jit
def block_gather(out, x, q, s, C, OC, K):
    """Per-32 scales, s[o, i >> 5] per value."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for o in range(lo, hi):
            a = np.float32(0.0)
            for i in range(C):
                a += x[i] * (np.float32(q[o, i]) * s[o, i >> 5])
            out[o] = a


@jit
def block_inner(out, x, q, s, C, OC, K):
    """Per-32 scales: a sum per block, then its scale."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for o in range(lo, hi):
            a = np.float32(0.0)
            for j in range(C // 32):
                p = np.float32(0.0)
                for i in range(32):
                    p += x[32 * j + i] * np.float32(q[o, 32 * j + i])
                a += p * s[o, j]
            out[o] = a


@jit
def block_lanes(out, x, q, s, C, OC, K):
    """Per-32 scales: 32 lane sums in a small array, scaled per block, summed once."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        acc = np.empty(32, np.float32)
        for o in range(lo, hi):
            acc[:] = 0
            for j in range(C // 32):
                sj = s[o, j]
                for i in range(32):
                    acc[i] += (x[32 * j + i] * sj) * np.float32(q[o, 32 * j + i])
            a = np.float32(0.0)
            for i in range(32):
                a += acc[i]
            out[o] = a


@jit
def block_scratch(out, x, q, s, C, OC, K):
    """Per-32 scales: x times the row's scales into a scratch row once per block row,
    i.e. dequantize the row into L1, then a float32 dot."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        row = np.empty(C, np.float32)
        for o in range(lo, hi):
            for j in range(C // 32):
                sj = s[o, j]
                for i in range(32):
                    row[32 * j + i] = np.float32(q[o, 32 * j + i]) * sj
            a = np.float32(0.0)
            for i in range(C):
                a += x[i] * row[i]
            out[o] = a


def quantize(w, block):
    """int8 q and float32 scales, absmax per `block` values of a row (block = C: per row)."""
    OC, C = w.shape
    g = w.reshape(OC, C // block, block)
    s = np.abs(g).max(axis=2) / 127
    q = np.rint(g / np.where(s == 0, 1, s)[..., None]).astype(np.int8).reshape(OC, C)
    return q, s.astype(np.float32)


rng = np.random.default_rng(0)
C = 768
shapes = [(3 * C, C), (C, C), (4 * C, C), (C, 4 * C)] * 12 + [(50304, C)]
mats = []
for OC, IC in shapes:
    w = (rng.standard_normal((OC, IC), dtype=np.float32) * 0.02)
    x = rng.standard_normal(IC, dtype=np.float32)
    qr, sr = quantize(w, IC)
    qb, sb = quantize(w, 32)
    bf = ((w.view(np.uint32) + 0x8000) >> 16).astype(np.uint16)
    mats.append(dict(w=w, x=x, qr=qr, sr=sr, qb=qb, sb=sb, bf=bf, out=np.empty(OC, np.float32)))

variants = {
    "fp32 (generic)": lambda m: generic(m["out"], m["x"], m["w"], m["x"].size, m["out"].size, K),
    "bf16 (generic)": lambda m: generic(m["out"], m["x"], m["bf"], m["x"].size, m["out"].size, K),
    "int8 row, factored": lambda m: row_factored(m["out"], m["x"], m["qr"], m["sr"], m["x"].size, m["out"].size, K),
    "int8 block32, gather": lambda m: block_gather(m["out"], m["x"], m["qb"], m["sb"], m["x"].size, m["out"].size, K),
    "int8 block32, inner sums": lambda m: block_inner(m["out"], m["x"], m["qb"], m["sb"], m["x"].size, m["out"].size, K),
    "int8 block32, lane array": lambda m: block_lanes(m["out"], m["x"], m["qb"], m["sb"], m["x"].size, m["out"].size, K),
    "int8 block32, scratch row": lambda m: block_scratch(m["out"], m["x"], m["qb"], m["sb"], m["x"].size, m["out"].size, K),
}
nbytes = {"fp32": 4, "bf16": 2, "int8 row": 1, "int8 block32": 1 + 4 / 32}

# accuracy of the products against float64, relative to the output's scale
for name, run in variants.items():
    errs = []
    for m in mats[:4] + mats[-1:]:
        run(m)
        exact = m["w"].astype(np.float64) @ m["x"]
        errs.append(np.abs(m["out"] - exact).max() / np.abs(exact).std())
    print(f"{name:28s} max |error| / sd(output): {max(errs):.2e}")

times = {name: [] for name in variants}
for r in range(args.rounds):
    for name, run in variants.items():
        start = time.perf_counter()
        for m in mats:
            run(m)
        times[name].append(time.perf_counter() - start)
weights = sum(OC * IC for OC, IC in shapes)
for name, t in times.items():
    med = np.median(t)
    per = next(v for k, v in nbytes.items() if name.startswith(k))
    print(f"{name:28s} {1e3 * med:6.2f} ms per decoding step's matvecs, {weights * per / med / 1e9:5.1f} GB/s")
