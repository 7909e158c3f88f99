"""The types a matmul weight can have, how a kernel reads one value of it, and the int8
and int4 quantizations.

A weight (and the token embedding wte) is one of:
- a float32 array (OC, C);
- a uint16 array (OC, C) of bfloat16 bits (a version-5 checkpoint's own, mapped as they
  are: half the bytes to read per token);
- a tuple (q, scales): q an int8 array (OC, C), scales a float32 array (OC, ceil(C/32)),
  one per block of QBLOCK values of a row; the value is q * its block's scale (a quarter
  of float32's bytes, plus 1/8 for the scales);
- a tuple (packed, scales): int4, two values a byte in a uint8 array (OC, 16 ceil(C/32)),
  scales bfloat16 bits (OC, ceil(C/32)); the value is (nibble - 8) * its block's scale
  (an eighth of float32's bytes, plus 1/16 for the scales; quantize_int4 has the layout).

Kernels read a value with weight_at(weight, o, i), which numba specializes by the type:
float32 as it is, bfloat16 widened exactly, by putting its 16 bits on top of a float32's,
reinterpreted in the register (an LLVM bitcast), int8 widened and multiplied by its
scale (broadcast once per 32 values, as LLVM compiles it), int4 unpacked from its byte
first. LLVM keeps the first three vectorized (dev/matmul/int8_matvec.py measures the
int8 layouts against float32); int4's prefill reads rows decoded to float32 instead
(parallel/kernels.py), its weight_at is the serial kernels' definition.

Decoding reads int8 and int4 weights faster with integer multiply-adds:
dot_blocks_int16 multiplies a row of them by activations rounded to int16, summing each
block's 32 products in int32 (vpmaddwd on AVX2, vpdpwssd with AVX-512 VNNI: 16 or 32
products an instruction), then scaling the block. numba's own loops type int32 products
as int64 and never reach those instructions (dev/matmul/int16_activations.py), so this
one is written in LLVM IR.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .dtypes import QBLOCK  # values per int8 scale; a shift in weight_at, so a power of 2

QBLOCK_SHIFT = QBLOCK.bit_length() - 1
HALF_BLOCK, HALF_SHIFT = QBLOCK // 2, QBLOCK_SHIFT - 1  # int4: a block's bytes; values j and j + HALF_BLOCK share one


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (uint32)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


def _vector(element, n):
    return ir.VectorType(element, n)


def _bf16_to_float(builder, bits):
    """The float32 whose top 16 bits are `bits` (an i16 of bfloat16), in LLVM IR."""
    wide = builder.shl(builder.zext(bits, ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
    return builder.bitcast(wide, ir.FloatType())


@intrinsic
def dot_blocks_int16(typingctx, q, xq, scales, blocks):
    """sum over b < blocks of scale[b] * (sum over j < 32 of value[32b + j] * xq[32b + j]),
    a float32: a row of int8 or int4 weights (their q and scales, 1-D and contiguous: int8
    q with float32 scales, or int4's packed uint8 with bfloat16-bits scales) times the
    activations rounded to int16, xq. Each block's products are summed in int32, exactly
    (32 x 127 x 32767 < 2^31), two halves of 16 as the pairs that the multiply-add
    instructions sum (LLVM matches the even + odd lanes of a widened multiply to
    vpmaddwd); the blocks go into 8 float32 lanes, added up at the end. An int4 block is
    16 bytes: values j and j + 16 in the low and high halves of byte j, so a 16-byte load,
    a mask and a shift give the two halves."""
    arrays = (q, xq, scales)
    if not (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)
            and xq.dtype == types.int16 and isinstance(blocks, types.Integer)
            and (q.dtype, scales.dtype) in ((types.int8, types.float32), (types.uint8, types.uint16))):
        return None  # the code reads the arrays' memory as one run: contiguous rows only
    int4 = q.dtype == types.uint8
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
        splat = lambda value: ir.Constant(_vector(i8, 16), [value] * 16)  # noqa: E731
        load16 = lambda offset: builder.load(builder.bitcast(builder.gep(q_data, [offset]),  # noqa: E731
                                                             _vector(i8, 16).as_pointer()), align=1)
        if int4:  # the block's 16 bytes: low nibbles are values 0-15, high ones 16-31, stored + 8
            packed = load16(builder.mul(b, ir.Constant(n.type, 16)))
            halves = [builder.sub(builder.and_(packed, splat(15)), splat(8)),
                      builder.sub(builder.lshr(packed, splat(4)), splat(8))]
        else:
            halves = [load16(builder.add(builder.mul(b, ir.Constant(n.type, 32)), ir.Constant(n.type, 16 * half)))
                      for half in range(2)]
        sums = []
        for half, qv in enumerate(halves):  # 16 products each, summed in pairs: 8 int32 lanes
            offset = builder.add(builder.mul(b, ir.Constant(n.type, 32)), ir.Constant(n.type, 16 * half))
            xv = builder.load(builder.bitcast(builder.gep(x_data, [offset]), _vector(i16, 16).as_pointer()), align=1)
            products = builder.mul(builder.sext(qv, _vector(i32, 16)), builder.sext(xv, _vector(i32, 16)), flags=["nsw"])
            even = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 8), list(range(0, 16, 2))))
            odd = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 8), list(range(1, 16, 2))))
            sums.append(builder.add(even, odd, flags=["nsw"]))
        block = builder.sitofp(builder.add(sums[0], sums[1], flags=["nsw"]), _vector(f32, 8))
        scale = builder.load(builder.gep(s_data, [b]))
        scale = builder.insert_element(ir.Constant(_vector(f32, 8), ir.Undefined),
                                       _bf16_to_float(builder, scale) if int4 else scale, ir.Constant(i32, 0))
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
    if isinstance(weight, tuple) and weight[0].dtype == np.uint8:
        packed, scales = weight
        nibble = (packed[o, (i >> QBLOCK_SHIFT) * HALF_BLOCK + (i & (HALF_BLOCK - 1))] >> (4 * ((i >> HALF_SHIFT) & 1))) & 15
        return np.float32(int(nibble) - 8) * bf16_to_float(scales[o, i >> QBLOCK_SHIFT])
    if isinstance(weight, tuple):
        q, scales = weight
        return np.float32(q[o, i]) * scales[o, i >> QBLOCK_SHIFT]
    if weight.dtype == np.uint16:
        return bf16_to_float(weight[o, i])
    return weight[o, i]


def bf16_to_float(bits):
    """The float32 whose top 16 bits are `bits` (a uint16 of bfloat16): exact."""
    return (np.uint32(bits) << np.uint32(16)).view(np.float32)


@overload(bf16_to_float, inline="always")
def _bf16_to_float_jit(bits):
    return lambda bits: _as_float32(np.uint32(bits) << np.uint32(16))


@overload(weight_at, inline="always")
def _weight_at(weight, o, i):
    if isinstance(weight, types.BaseTuple) and weight[0].dtype == types.uint8:
        def int4_at(weight, o, i):
            byte = weight[0][o, (i >> QBLOCK_SHIFT) * HALF_BLOCK + (i & (HALF_BLOCK - 1))]
            nibble = (np.int32(byte) >> np.int32(4 * ((i >> HALF_SHIFT) & 1))) & np.int32(15)
            return np.float32(nibble - np.int32(8)) * bf16_to_float(weight[1][o, i >> QBLOCK_SHIFT])
        return int4_at
    if isinstance(weight, types.BaseTuple):
        return lambda weight, o, i: np.float32(weight[0][o, i]) * weight[1][o, i >> QBLOCK_SHIFT]
    if weight.dtype == types.uint16:
        return lambda weight, o, i: bf16_to_float(weight[o, i])
    return lambda weight, o, i: weight[o, i]


# 16-bit activations: the KV cache (model.Activations' qkv) may hold bfloat16 bits, which
# the matmul writes through stored() and attention reads through as_float()

def as_float(x):
    """x as a float32: a float32 as it is, bfloat16 bits (uint16) widened exactly."""
    return bf16_to_float(x) if np.asarray(x).dtype == np.uint16 else np.float32(x)


@overload(as_float, inline="always")
def _as_float(x):
    if x == types.uint16:
        return lambda x: bf16_to_float(x)
    return lambda x: x


def stored(out, value):
    """The float32 `value` as an element of `out` holds it: as it is in a float32 array,
    rounded to the nearest bfloat16 (ties to even; a NaN stays a NaN) in a uint16 one."""
    return value if out.dtype == np.float32 else float32_to_bf16_bits(value)


@overload(stored, inline="always")
def _stored(out, value):
    if out.dtype == types.uint16:
        return lambda out, value: float32_to_bf16_bits(value)
    return lambda out, value: value


def float32_to_bf16_bits(value):
    """A float32's nearest bfloat16 (ties to even) as uint16 bits; a NaN stays a NaN (the
    rounding's carry would make some of them infinities)."""
    bits = np.uint32(np.float32(value).view(np.uint32))
    if bits & np.uint32(0x7FFFFFFF) > np.uint32(0x7F800000):
        return np.uint16((bits >> np.uint32(16)) | np.uint32(0x40))
    return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@overload(float32_to_bf16_bits, inline="always")
def _float32_to_bf16_bits_jit(value):
    return float32_to_bf16_bits


def rows_for_tiles(weight, lo, hi, scratch):
    """(rows, first): where prefill's tiles read the weight's rows [lo, hi), row o being
    rows[o - first]. An int4 weight's are decoded into scratch (float32, at least hi - lo
    rows of 32 ceil(C / 32)), first = lo: unpacking a nibble costs more than a tile's
    multiply-adds, so it is done once for all the positions that the rows meet. Any other
    type is read as it is, first = 0 (its weight_at vectorizes in the tiles)."""
    return weight, 0


@overload(rows_for_tiles, inline="always")
def _rows_for_tiles(weight, lo, hi, scratch):
    if not (isinstance(weight, types.BaseTuple) and weight[0].dtype == types.uint8):
        return lambda weight, lo, hi, scratch: (weight, 0)

    def decode(weight, lo, hi, scratch):
        packed, scales = weight
        # a block's HALF_BLOCK bytes, as a number LLVM does not know: a loop of a known 16
        # iterations it unrolls into scalar code, one of n it vectorizes (dev/matmul/int4_decode.py)
        n = packed.shape[1] // max(scales.shape[1], 1)
        for r in range(hi - lo):
            for j in range(scales.shape[1]):  # 1-D views of the block: LLVM vectorizes these, not the 2-D index
                d = bf16_to_float(scales[lo + r, j])
                block = packed[lo + r, j * n:(j + 1) * n]
                low = scratch[r, 2 * j * n:(2 * j + 1) * n]
                high = scratch[r, (2 * j + 1) * n:(2 * j + 2) * n]
                for k in range(n):
                    byte = np.int32(block[k])
                    low[k] = np.float32((byte & np.int32(15)) - np.int32(8)) * d
                    high[k] = np.float32((byte >> np.int32(4)) - np.int32(8)) * d
        return scratch, lo
    return decode


def scratch_for(weight, rows):
    """The float32 scratch that rows_for_tiles needs for `rows` rows of this weight (an
    empty one for types read as they are)."""
    return np.empty((0, 0), np.float32)


@overload(scratch_for, inline="always")
def _scratch_for(weight, rows):
    if isinstance(weight, types.BaseTuple) and weight[0].dtype == types.uint8:
        return lambda weight, rows: np.empty((rows, weight[1].shape[1] * QBLOCK), np.float32)
    return lambda weight, rows: np.empty((0, 0), np.float32)


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
    blocks = -(-C // QBLOCK)
    return _by_chunks(weight, np.empty((weight[..., 0].size, C), np.int8),
                      np.empty((weight[..., 0].size, blocks), np.float32), _quantize_rows, done)


def quantize_int4(weight, done=None):
    """(packed, scales) of a float32 or bfloat16-bits weight (..., C), as quantize_int8
    goes (by blocks of QBLOCK values of a row, by chunks of rows, leading dimensions
    kept) but in 4 bits: the block's value of largest magnitude m sets its scale d =
    m / -8, rounded to bfloat16 (scales: uint16 bits, (..., ceil(C / QBLOCK))), and each
    value v is stored as rint(v / d) clipped to [-8, 7]: m itself is -8 exactly and the
    other side reaches 7 d, 16 levels (llama.cpp's q4_0, whose scale is a float16). Held
    plus 8 in a nibble, two a byte: the block's values j and j + 16 in the low and high
    nibble of its byte j (packed: uint8, (..., 16 ceil(C / QBLOCK)); a partial last
    block is padded with zeros), the layout that dot_blocks_int16 unpacks with a mask
    and a shift."""
    C = weight.shape[-1]
    blocks = -(-C // QBLOCK)
    return _by_chunks(weight, np.empty((weight[..., 0].size, HALF_BLOCK * blocks), np.uint8),
                      np.empty((weight[..., 0].size, blocks), np.uint16), _quantize_rows_int4, done)


def _by_chunks(weight, q, scales, quantize_rows, done):
    """quantize_rows(q, scales, rows) on CHUNK_BYTES of the weight's rows at a time,
    telling done(lo, hi) after each; q and scales reshaped as the weight's leading
    dimensions."""
    C = weight.shape[-1]
    rows = weight.reshape(-1, C)
    step = max(1, CHUNK_BYTES // (C * rows.itemsize))
    for lo in range(0, rows.shape[0], step):
        hi = min(lo + step, rows.shape[0])
        quantize_rows(q[lo:hi], scales[lo:hi], rows[lo:hi])
        if done:
            done(lo, hi)
    lead = weight.shape[:-1]
    return q.reshape(*lead, q.shape[1]), scales.reshape(*lead, scales.shape[1])


CHUNK_BYTES = 16 << 20  # of the source weight, per step of quantize_int8 and quantize_int4


# fastmath without "arcp": the max and the rounding vectorize, the division stays IEEE's,
# so q and scales equal numpy's to the bit (tests/test_kernels.py)
QUANTIZE = dict(parallel=True, cache=True, error_model="numpy", fastmath={"nnan", "ninf", "nsz", "reassoc", "contract"})


@njit(**QUANTIZE)
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


@njit(**QUANTIZE)
def _quantize_rows_int4(packed, scales, rows):
    C = rows.shape[1]
    for r in prange(rows.shape[0]):
        for j in range(scales.shape[1]):
            lo = j * QBLOCK
            n = min(C - lo, QBLOCK)
            m = np.float32(0.0)  # the value of largest magnitude (the first, on a tie)
            for i in range(n):
                v = weight_at(rows, r, lo + i)
                if abs(v) > abs(m):
                    m = v
            scales[r, j] = float32_to_bf16_bits(m / np.float32(-8.0))  # d, rounded to bfloat16
            d = bf16_to_float(scales[r, j])
            if d == 0:
                d = np.float32(1.0)  # an all-zero block: every value 0
            for i in range(HALF_BLOCK):
                nibbles = np.uint8(0)
                for half in range(2):
                    k = i + half * HALF_BLOCK
                    v = weight_at(rows, r, lo + k) if k < n else np.float32(0.0)
                    level = min(max(np.rint(v / d), np.float32(-8.0)), np.float32(7.0))
                    nibbles |= np.uint8(np.int32(level) + 8) << np.uint8(4 * half)
                packed[r, j * HALF_BLOCK + i] = nibbles


class QuantizedStack:
    """Every layer's int8 or int4 weight, stacked: q (L, OC, ...), scales (L, OC, C /
    QBLOCK); [l] is layer l's (q, scales) tuple, as a float32 stack's [l] is its (OC, C)
    array."""

    def __init__(self, q, scales):
        self.q, self.scales = q, scales

    def __getitem__(self, l):
        return self.q[l], self.scales[l]
