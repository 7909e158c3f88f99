"""The types a matmul weight can have, how a kernel reads one value of it, and the int8
quantization.

A weight (and the token embedding wte) is one of:
- a float32 array (OC, C);
- a uint16 array (OC, C) of bfloat16 bits (a version-5 checkpoint's own, mapped as they
  are: half the bytes to read per token);
- a tuple (q, scales): q an int8 array (OC, C), scales a float32 array (OC, ceil(C/32)),
  one per block of QBLOCK values of a row; the value is q * its block's scale (a quarter
  of float32's bytes, plus 1/8 for the scales).

Kernels read a value with weight_at(weight, o, i), which numba specializes by the type:
float32 as it is, bfloat16 widened exactly, by putting its 16 bits on top of a float32's,
reinterpreted in the register (an LLVM bitcast), int8 widened and multiplied by its
scale (broadcast once per 32 values, as LLVM compiles it). LLVM keeps all three
vectorized (dev/matmul/int8_matvec.py measures the int8 layouts against float32).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .dtypes import QBLOCK  # values per int8 scale; a shift in weight_at, so a power of 2

QBLOCK_SHIFT = QBLOCK.bit_length() - 1


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (uint32)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


def weight_at(weight, o, i):
    """weight[o, i] as a float32, whatever the weight's type."""
    if isinstance(weight, tuple):
        q, scales = weight
        return np.float32(q[o, i]) * scales[o, i >> QBLOCK_SHIFT]
    if weight.dtype == np.uint16:
        return (weight[o, i].astype(np.uint32) << 16).view(np.float32)
    return weight[o, i]


@overload(weight_at, inline="always")
def _weight_at(weight, o, i):
    if isinstance(weight, types.BaseTuple):
        return lambda weight, o, i: np.float32(weight[0][o, i]) * weight[1][o, i >> QBLOCK_SHIFT]
    if weight.dtype == types.uint16:
        return lambda weight, o, i: _as_float32(np.uint32(weight[o, i]) << np.uint32(16))
    return lambda weight, o, i: weight[o, i]


def quantize_int8(weight, done=None):
    """(q, scales) of a float32 or bfloat16-bits weight (..., C): per block of QBLOCK
    values of a row (the last a partial one if QBLOCK does not divide C), scale =
    max |value| / 127 and q = value / scale rounded to nearest even, so the block's
    largest value is +-127 exactly. Leading dimensions are kept: a stacked (L, OC, C)
    weight gives q (L, OC, C) and scales (L, OC, ceil(C / QBLOCK)). The rows go
    CHUNK_BYTES of them at a time, and done(lo, hi) is called after rows [lo, hi): a
    loader drops their file pages there, so that a weight's float32 copy is never in
    memory whole."""
    C = weight.shape[-1]
    rows = weight.reshape(-1, C)
    q = np.empty(rows.shape, np.int8)
    scales = np.empty((rows.shape[0], -(-C // QBLOCK)), np.float32)
    step = max(1, CHUNK_BYTES // (C * rows.itemsize))
    for lo in range(0, rows.shape[0], step):
        hi = min(lo + step, rows.shape[0])
        _quantize_rows(q[lo:hi], scales[lo:hi], rows[lo:hi])
        if done:
            done(lo, hi)
    return q.reshape(weight.shape), scales.reshape(*weight.shape[:-1], scales.shape[1])


CHUNK_BYTES = 16 << 20  # of the source weight, per step of quantize_int8


# fastmath without "arcp": the max and the rounding vectorize, the division stays IEEE's,
# so q and scales equal numpy's to the bit (tests/test_kernels.py)
@njit(parallel=True, cache=True, error_model="numpy", fastmath={"nnan", "ninf", "nsz", "reassoc", "contract"})
def _quantize_rows(q, scales, rows):
    C = rows.shape[1]
    for r in prange(rows.shape[0]):
        for j in range(scales.shape[1]):
            lo = j * QBLOCK
            n = min(C - lo, QBLOCK)
            amax = np.float32(0.0)
            for i in range(n):
                amax = max(amax, abs(weight_at(rows, r, lo + i)))
            s = amax / np.float32(127.0)
            scales[r, j] = s
            if s == 0:
                s = np.float32(1.0)  # an all-zero block: q = 0
            for i in range(n):
                q[r, lo + i] = np.int8(np.rint(weight_at(rows, r, lo + i) / s))


class QuantizedStack:
    """Every layer's int8 weight, stacked: q (L, OC, C), scales (L, OC, C / QBLOCK);
    [l] is layer l's (q, scales) tuple, as a float32 stack's [l] is its (OC, C) array."""

    def __init__(self, q, scales):
        self.q, self.scales = q, scales

    def __getitem__(self, l):
        return self.q[l], self.scales[l]
