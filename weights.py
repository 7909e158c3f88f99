"""The types a matmul weight can have, and how a kernel reads one value of it.

A weight (and the token embedding wte) is a float32 array, or a uint16 array holding
bfloat16 bits (a version-5 checkpoint's own, mapped as they are: half the bytes to read
per token). Kernels read a value with weight_at(weight, o, i), which numba specializes by
the array's type: float32 as it is, bfloat16 widened exactly, by putting its 16 bits on
top of a float32's, reinterpreted in the register (an LLVM bitcast), which LLVM keeps
vectorized.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (uint32)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


def weight_at(weight, o, i):
    """weight[o, i] as a float32, whatever the weight's type."""
    if weight.dtype == np.uint16:
        return (weight[o, i].astype(np.uint32) << 16).view(np.float32)
    return weight[o, i]


@overload(weight_at, inline="always")
def _weight_at(weight, o, i):
    if weight.dtype == types.uint16:
        return lambda weight, o, i: _as_float32(np.uint32(weight[o, i]) << np.uint32(16))
    return lambda weight, o, i: weight[o, i]
