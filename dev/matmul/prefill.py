"""Prefill's matmul at T = 64 and 512: does blocking the output channels keep the inputs
in L1 and the weights in L2? matmul_forward (each pair of weight rows sweeps every
position: at T = 512 the inputs, 1.5-6 MB, come from L3 for every pair) against the
same 2 x 4 tile with the loops turned (a block of OB channels, then every 4 positions,
then the block's pairs), a 4 x 4 tile, and a 3 x 4 tile whose 12 sums stay in
registers (parallel.tile.dots_3x4, LLVM IR); GFLOP/s on the 124M shapes, interleaved,
medians.

    python dev/matmul/prefill.py [--threads K]
"""
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.parallel.kernels import _tile_x4, chunk

args = devargs.parse(__doc__)
K = args.threads
jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")


@jit
def blocked(out, inp, weight, bias, B, T, C, OC, K, OB, CH):
    """Blocks of OB channels, then every 4 positions, then the block's tiles of CH
    channels (_tile_x4: 2 x 4, 3 x 4 AVX2's, or 4 x 4 AVX-512's)."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for ob in range(lo, hi, OB):
                for t in range(0, T // 4 * 4, 4):
                    for o in range(ob, min(ob + OB, hi) - CH + 1, CH):
                        _tile_x4(out, inp, weight, bias, b, o, o, t, C, CH)


rng = np.random.default_rng(0)
cases = []
for T in (64, 512):
    for name, (C, OC) in (("qkv", (768, 2304)), ("fc", (768, 3072)), ("fcproj", (3072, 768))):
        inp = rng.standard_normal((1, T, C), dtype=np.float32)
        weight = rng.standard_normal((OC, C), dtype=np.float32) * np.float32(0.02)
        bias = np.zeros(OC, np.float32)
        cases.append((f"{name} T={T}", inp, weight, bias, T, C, OC, np.empty((1, T, OC), np.float32)))

variants = {"matmul_forward": lambda c: args.kernels.matmul_forward(c[7], c[1], c[2], c[3], 1, c[4], c[5], c[6])}
for OB in (16, 32, 64, 128):
    variants[f"2x4, OB={OB}"] = lambda c, OB=OB: blocked(c[7], c[1], c[2], c[3], 1, c[4], c[5], c[6], K, OB, 2)
variants["3x4 in registers, OB=48"] = lambda c: blocked(c[7], c[1], c[2], c[3], 1, c[4], c[5], c[6], K, 48, 3)
for OB in (32, 64):
    variants[f"4x4, OB={OB}"] = lambda c, OB=OB: blocked(c[7], c[1], c[2], c[3], 1, c[4], c[5], c[6], K, OB, 4)

for case in cases:
    expected = case[1][0] @ case[2].T
    times = {}
    for name, run in variants.items():
        run(case)
        assert np.allclose(case[7][0], expected, rtol=1e-3, atol=1e-3), name
        times[name] = []
    for _ in range(7):
        for name, run in variants.items():
            start = time.perf_counter()
            run(case)
            times[name].append(time.perf_counter() - start)
    flops = 2 * case[4] * case[5] * case[6]
    print(case[0] + ": " + ", ".join(f"{name} {flops / np.median(t) / 1e9:.0f}" for name, t in times.items()) + " GFLOP/s",
          flush=True)
