"""Prefill's int8 and int4 matmul: integer tiles against float32 tiles. The parallel
backend's matmul_forward (activations rounded to int16, tile.tile_blocks_int16: each
block's products summed in int32 by the multiply-add instructions, then scaled) beside
the float32 tiles that prefill used before (_tile_2x4 / _tile_4x4 as
parallel.kernels.TILE_CHANNELS picks: int8 widened and scaled per value by weight_at,
int4 rows decoded to float32 a block of channels at a time, weights.rows_for_tiles).
The 124M shapes at T = 64 and 512, one layer's weight (in L3), GFLOP/s, interleaved,
medians; and each path's largest error against the float64 product of the dequantized
weights, relative to the terms' absolute sum.

    python dev/matmul/int_tile.py [--threads K] [--rounds R]
"""
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__, [("--rounds", dict(type=int, default=7, help="timed rounds (default: 7)"))])

from gptpy.parallel.kernels import MAX_BLOCK_ROWS as OB, TILE_CHANNELS, _tile_2x4, _tile_4x4, chunk  # noqa: E402
from gptpy.weights import quantize_int4, quantize_int8, rows_for_tiles, scratch_for  # noqa: E402
from gptpy.dtypes import QBLOCK  # noqa: E402


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def float_tiles(out, inp, weight, bias, T, C, OC, K, CH):
    """The float32 tiles' loops (OC and T multiples of the tile here)."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        scratch = scratch_for(weight, OB)
        for ob in range(lo, hi, OB):
            oe = min(ob + OB, hi)
            rows, first = rows_for_tiles(weight, ob, oe, scratch)
            for t in range(0, T, 4):
                for o in range(ob, oe, CH):
                    if CH == 4:
                        _tile_4x4(out, inp, rows, bias, 0, o, o - first, t, C)
                    else:
                        _tile_2x4(out, inp, rows, bias, 0, o, o - first, t, C)


def dequantized(weight, C):
    q, scales = weight
    if q.dtype == np.int8:
        return q.astype(np.float64) * np.repeat(scales, QBLOCK, axis=1)[:, :C]
    low, high = (q & 15).astype(np.int64) - 8, (q >> 4).astype(np.int64) - 8
    blocks = q.shape[1] // (QBLOCK // 2)
    values = np.concatenate([low.reshape(-1, blocks, QBLOCK // 2), high.reshape(-1, blocks, QBLOCK // 2)], axis=2)
    d = (scales.astype(np.uint32) << 16).view(np.float32)
    return (values * d[:, :, None]).reshape(q.shape[0], -1)[:, :C]


rng = np.random.default_rng(0)
K = args.threads
for T in (64, 512):
    for name, (C, OC) in (("qkv", (768, 2304)), ("fc", (768, 3072)), ("fcproj", (3072, 768))):
        inp = rng.standard_normal((1, T, C), dtype=np.float32)
        w32 = rng.standard_normal((OC, C), dtype=np.float32) * np.float32(0.02)
        bias = np.zeros(OC, np.float32)
        line = []
        for dtype, quantize in (("int8", quantize_int8), ("int4", quantize_int4)):
            weight = quantize(w32)
            exact = inp[0].astype(np.float64) @ dequantized(weight, C).T
            terms = np.abs(inp[0]).astype(np.float64) @ np.abs(dequantized(weight, C)).T
            outs = {v: np.empty((1, T, OC), np.float32) for v in ("integer", "float32")}
            runs = {"integer": lambda: args.kernels.matmul_forward(outs["integer"], inp, weight, bias, 1, T, C, OC),
                    "float32": lambda: float_tiles(outs["float32"], inp, weight, bias, T, C, OC, K, TILE_CHANNELS)}
            times = {v: [] for v in runs}
            for v, run in runs.items():
                run()
            for _ in range(args.rounds):
                for v, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[v].append(time.perf_counter() - start)
            flops = 2 * T * C * OC
            for v in runs:
                error = (np.abs(outs[v][0] - exact) / terms).max()
                line.append(f"{dtype} {v} {flops / np.median(times[v]) / 1e9:.0f} GFLOP/s (error {error:.1e})")
        print(f"{name} T={T}: " + ", ".join(line), flush=True)
