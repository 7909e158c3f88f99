"""Prefill's int4 rows decoded to float32 (weights.rows_for_tiles, by the LLVM IR of
weights.decode_int4_row): how fast, against numba's loops it replaced (a view of each
block's 16 bytes and a loop of 16 of unknown length, and that loop written with 16 as a
constant, which LLVM unrolls into scalar code), and how many vector instructions each
compiles to; then a 124M prefill matmul (fc and fcproj, T = 64) in fp32, int8 and int4.

    python dev/matmul/int4_decode.py [--model M] [--threads K]
"""
import re

import numpy as np
from numba import njit

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.weights import bf16_to_float, quantize_int4, quantize_int8, rows_for_tiles

args = devargs.parse(__doc__)


@njit(fastmath=True, cache=True, error_model="numpy")
def promoted(weight, scratch, OC):
    for ob in range(0, OC, 64):
        rows_for_tiles(weight, ob, min(ob + 64, OC), scratch)


@njit(fastmath=True, cache=True, error_model="numpy")
def block_views(weight, scratch, OC):
    packed, scales = weight
    n = packed.shape[1] // max(scales.shape[1], 1)  # a block's bytes, as a number LLVM does not unroll
    for ob in range(0, OC, 64):
        for r in range(min(64, OC - ob)):
            for j in range(scales.shape[1]):
                d = bf16_to_float(scales[ob + r, j])
                block = packed[ob + r, j * n:(j + 1) * n]
                low = scratch[r, 2 * j * n:(2 * j + 1) * n]
                high = scratch[r, (2 * j + 1) * n:(2 * j + 2) * n]
                for k in range(n):
                    byte = np.int32(block[k])
                    low[k] = np.float32((byte & np.int32(15)) - np.int32(8)) * d
                    high[k] = np.float32((byte >> np.int32(4)) - np.int32(8)) * d


@njit(fastmath=True, cache=True, error_model="numpy")
def constant_block(weight, scratch, OC):
    packed, scales = weight
    for ob in range(0, OC, 64):
        for r in range(min(64, OC - ob)):
            for j in range(scales.shape[1]):
                d = bf16_to_float(scales[ob + r, j])
                for k in range(16):
                    byte = np.int32(packed[ob + r, 16 * j + k])
                    scratch[r, 32 * j + k] = np.float32((byte & 15) - 8) * d
                    scratch[r, 32 * j + 16 + k] = np.float32((byte >> 4) - 8) * d


def median_ms(f, rounds=20):
    return devargs.median_us(f, rounds) / 1e3


rng = np.random.default_rng(0)
for OC, C in ((3072, 768), (768, 3072)):
    w = rng.standard_normal((OC, C)).astype(np.float32)
    int4 = quantize_int4(w)
    scratch = np.empty((64, C), np.float32)
    for name, f in (("rows_for_tiles", promoted), ("block views", block_views), ("16 as a constant", constant_block)):
        ms = median_ms(lambda: f(int4, scratch, OC))
        asm = list(f.inspect_asm().values())[0]
        print(f"decode {OC}x{C} {name:18s} {ms:6.2f} ms  {OC * C / ms / 1e6:5.2f} G values/s; "
              f"vector multiplies {len(re.findall('vmulps', asm))}, scalar conversions {len(re.findall('vcvtsi2ss', asm))}")
    x, bias = rng.standard_normal((1, 64, C)).astype(np.float32), np.zeros(OC, np.float32)
    out = np.zeros((1, 64, OC), np.float32)
    for name, weight in (("fp32", w), ("int8", quantize_int8(w)), ("int4", int4)):
        ms = median_ms(lambda: args.kernels.matmul_forward(out, x, weight, bias, 1, 64, C, OC))
        print(f"matmul {OC}x{C} T=64 {name}: {ms:.2f} ms")
