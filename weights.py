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

Decoding reads int8 weights faster with integer multiply-adds: dot_int8_int16 multiplies
a row of int8 values by activations rounded to int16, summing each block's 32 products
in int32 (vpmaddwd on AVX2, vpdpwssd with AVX-512 VNNI: 16 or 32 products an
instruction), then scaling the block. numba's own loops type int32 products as int64
and never reach those instructions (dev/matmul/int16_activations.py), so this one is
written in LLVM IR.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .dtypes import QBLOCK  # values per int8 scale; a shift in weight_at, so a power of 2

QBLOCK_SHIFT = QBLOCK.bit_length() - 1


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (uint32)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


def _vector(element, n):
    return ir.VectorType(element, n)


@intrinsic
def dot_int8_int16(typingctx, q, xq, scales, blocks):
    """sum over b < blocks of scales[b] * (sum over j < 32 of q[32b + j] * xq[32b + j]),
    a float32; q int8, xq int16 and scales float32, 1-D and contiguous (a weight row, the
    rounded activations, the row's scales). Each block's products are summed in int32,
    exactly (32 x 127 x 32767 < 2^31), two halves of 16 as the pairs that the
    multiply-add instructions sum (LLVM matches the even + odd lanes of a widened
    multiply to vpmaddwd); the blocks go into 8 float32 lanes, added up at the end."""
    arrays = (q, xq, scales)
    if not (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)
            and (q.dtype, xq.dtype, scales.dtype) == (types.int8, types.int16, types.float32)
            and isinstance(blocks, types.Integer)):
        return None  # the code reads the arrays' memory as one run: contiguous rows only
    signature = types.float32(q, xq, scales, blocks)

    def codegen(context, builder, sig, args):
        i8, i16, i32, f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()
        q_data = context.make_array(sig.args[0])(context, builder, args[0]).data
        x_data = context.make_array(sig.args[1])(context, builder, args[1]).data
        s_data = context.make_array(sig.args[2])(context, builder, args[2]).data
        n = args[3]
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vector(f32, 8), [_vector(f32, 8)] * 3),
                                             "llvm.fma.v8f32")
        zero = ir.Constant(_vector(f32, 8), [0.0] * 8)
        entry = builder.block
        loop, done = builder.append_basic_block("blocks"), builder.append_basic_block("blocks.done")
        builder.cbranch(builder.icmp_signed(">", n, ir.Constant(n.type, 0)), loop, done)

        builder.position_at_end(loop)
        b = builder.phi(n.type)
        lanes = builder.phi(_vector(f32, 8))
        sums = []
        for half in range(2):  # 16 products each, summed in pairs: 8 int32 lanes
            offset = builder.add(builder.mul(b, ir.Constant(n.type, 32)), ir.Constant(n.type, 16 * half))
            qv = builder.load(builder.bitcast(builder.gep(q_data, [offset]), _vector(i8, 16).as_pointer()), align=1)
            xv = builder.load(builder.bitcast(builder.gep(x_data, [offset]), _vector(i16, 16).as_pointer()), align=1)
            products = builder.mul(builder.sext(qv, _vector(i32, 16)), builder.sext(xv, _vector(i32, 16)), flags=["nsw"])
            even = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 8), list(range(0, 16, 2))))
            odd = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 8), list(range(1, 16, 2))))
            sums.append(builder.add(even, odd, flags=["nsw"]))
        block = builder.sitofp(builder.add(sums[0], sums[1], flags=["nsw"]), _vector(f32, 8))
        scale = builder.insert_element(ir.Constant(_vector(f32, 8), ir.Undefined), builder.load(builder.gep(s_data, [b])),
                                       ir.Constant(i32, 0))
        scale = builder.shuffle_vector(scale, scale, ir.Constant(_vector(i32, 8), [0] * 8))
        lanes_next = builder.call(fma, [block, scale, lanes])
        b_next = builder.add(b, ir.Constant(n.type, 1))
        b.add_incoming(ir.Constant(n.type, 0), entry)
        b.add_incoming(b_next, loop)
        lanes.add_incoming(zero, entry)
        lanes.add_incoming(lanes_next, loop)
        builder.cbranch(builder.icmp_signed("<", b_next, n), loop, done)

        builder.position_at_end(done)
        result = builder.phi(_vector(f32, 8))
        result.add_incoming(zero, entry)
        result.add_incoming(lanes_next, loop)
        total = builder.extract_element(result, ir.Constant(i32, 0))
        for lane in range(1, 8):
            total = builder.fadd(total, builder.extract_element(result, ir.Constant(i32, lane)))
        return total

    return signature, codegen


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
