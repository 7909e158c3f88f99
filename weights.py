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
int8 layouts against float32); int4's float32 tiles read rows decoded to float32 instead
(rows_for_tiles), its weight_at is the serial kernels' definition.

The parallel backend reads int8 and int4 rows of whole blocks faster with integer
multiply-adds: dot_blocks_int16 (decoding) multiplies two rows of them by activations
rounded to int16, summing each block's 32 products in int32 (vpmaddwd on AVX2, vpdpwssd
with AVX-512 VNNI: 16 or 32 products an instruction), then scaling the block. numba's own loops type int32
products as int64 and never reach those instructions (dev/matmul/int16_activations.py),
so this one is written in LLVM IR. It takes an int4 row two blocks (32 bytes) at a time,
whose nibbles, zero-extended to 16 bits, unpack with one mask and one shift into the
16-bit lanes of a 512-bit register, against activations that round_activations laid out
in that order, with the -8 of every nibble taken off in one integer add; two rows share
each load of the activations (dev/matmul/int4_matvec.py measures it). Prefill's tiles
(parallel.tile.tile_blocks_int16) build on the same blocks: _int8_weights and
_int4_weights widen a row's block once, their _products multiply it by a position's.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import target  # noqa: F401  (before anything compiles: 512-bit vectors on every AVX-512 host)
from .dtypes import QBLOCK  # values per int8 scale; a shift in weight_at, so a power of 2

QBLOCK_SHIFT = QBLOCK.bit_length() - 1
HALF_BLOCK, HALF_SHIFT = QBLOCK // 2, QBLOCK_SHIFT - 1  # int4: a block's bytes; values j and j + HALF_BLOCK share one


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (uint32)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def float32_bits(typingctx, value):
    """The bits (uint32) of the float32 `value`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


def _vector(element, n):
    return ir.VectorType(element, n)


# an int4 pair of blocks in xq: their 64 values (see round_activations), then 16 int32 corrections
INT4_PAIR_INT16S = 2 * QBLOCK + 32


@njit(cache=True)
def activations_int16_size(C):
    """The int16s that round_activations writes for a position of C channels (C a
    multiple of QBLOCK), for either integer type: int4's layout is the longer."""
    return INT4_PAIR_INT16S * ((C // QBLOCK + 1) // 2)


PREFETCH_BYTES = 8192  # how far ahead in a row decoding's integer matvec prefetches
# ... and its hint, llvm.prefetch's locality: 3 (kept in every level); 0 (prefetchnta, a
# line for one use) was no faster, in one process (dev/matmul/int_prefetch_hint.py)
PREFETCH_LOCALITY = 3


def prefetch_ir(builder, pointer, locality=3):
    """LLVM IR asking the CPU to bring pointer's cache line toward L1 (llvm.prefetch: a
    read; locality 3 keeps it in every level, 0 marks it for one use). A hint: no effect
    on results, and no fault past an array's end."""
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                        "llvm.prefetch.p0i8")
    builder.call(fn, [builder.bitcast(pointer, i8p), ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])


def _load(builder, base, offset, vector_type):
    """The vector_type at base[offset] (base a pointer to its elements; no alignment assumed)."""
    return builder.load(builder.bitcast(builder.gep(base, [offset]), vector_type.as_pointer()), align=1)


def _multiply_add_pairs(builder, a, b):
    """a, b: <32 x i16>; the 16 int32 sums of their adjacent products, a[2k] b[2k] +
    a[2k+1] b[2k+1], exact: the pattern LLVM lowers to vpmaddwd (vpdpwssd with VNNI)."""
    i32 = ir.IntType(32)
    products = builder.mul(builder.sext(a, _vector(i32, 32)), builder.sext(b, _vector(i32, 32)), flags=["nsw"])
    even = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 16), list(range(0, 32, 2))))
    odd = builder.shuffle_vector(products, products, ir.Constant(_vector(i32, 16), list(range(1, 32, 2))))
    return builder.add(even, odd, flags=["nsw"])


def _splat(builder, scalar, n):
    """scalar in all n lanes of a vector."""
    vector = builder.insert_element(ir.Constant(_vector(scalar.type, n), ir.Undefined), scalar,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(vector, vector, ir.Constant(_vector(ir.IntType(32), n), [0] * n))


def _int8_weights(builder, q_row, s_row, b):
    """Block b of an int8 row, as products with any position's activations take it: its
    32 values widened to int16, and its scale in 16 lanes."""
    i8, i16, f32 = ir.IntType(8), ir.IntType(16), ir.FloatType()
    offset = builder.mul(b, ir.Constant(b.type, QBLOCK))
    values = builder.sext(_load(builder, q_row, offset, _vector(i8, QBLOCK)), _vector(i16, QBLOCK))
    scale = builder.load(builder.gep(builder.bitcast(s_row, f32.as_pointer()), [b]))
    return values, _splat(builder, scale, 16)


def _int8_products(builder, values, x, b):
    """Block b's 16 int32 sums of product pairs: its widened values (_int8_weights) times
    the activations xq (x, an int16 pointer to a position's first)."""
    offset = builder.mul(b, ir.Constant(b.type, QBLOCK))
    return _multiply_add_pairs(builder, values, _load(builder, x, offset, _vector(ir.IntType(16), QBLOCK)))


def _int8_block(builder, q_row, s_row, x, b):
    """Block b of an int8 row: its 16 int32 sums of product pairs, and its scale in 16 lanes."""
    values, scales = _int8_weights(builder, q_row, s_row, b)
    return _int8_products(builder, values, x, b), scales


def _int4_weights(builder, q_row, s_row, g, single):
    """Blocks 2g and 2g + 1 of an int4 row (2g alone if single), as products with any
    position's activations take them: (values 0-15 of each block, values 16-31 of each)
    as int16s + 8, and the two scales, the first in lanes 0-7, the second in 8-15.
    Zero-extended to 16 bits, the bytes of the two blocks give their values 0-15 by a
    mask and 16-31 by a shift, stored + 8: xq's corrections (-8 x each block's sum of
    activations) take it off."""
    i8, i16, i32, f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()
    c = lambda v: ir.Constant(g.type, v)  # noqa: E731
    if single:  # the row's last block: 16 bytes, and zeros where a second block would be
        packed = _load(builder, q_row, builder.mul(g, c(QBLOCK)), _vector(i8, HALF_BLOCK))
        packed = builder.shuffle_vector(packed, ir.Constant(_vector(i8, HALF_BLOCK), [0] * HALF_BLOCK),
                                        ir.Constant(_vector(i32, QBLOCK), list(range(QBLOCK))))
        first_scale = builder.gep(builder.bitcast(s_row, i16.as_pointer()), [builder.mul(g, c(2))])
        scales = builder.zext(builder.load(first_scale), i32)
    else:
        packed = _load(builder, q_row, builder.mul(g, c(QBLOCK)), _vector(i8, QBLOCK))
        scales = builder.load(builder.bitcast(builder.gep(s_row, [builder.mul(g, c(4))]), i32.as_pointer()), align=1)
    words = builder.zext(packed, _vector(i16, QBLOCK))
    low = builder.and_(words, ir.Constant(_vector(i16, QBLOCK), [15] * QBLOCK))
    high = builder.lshr(words, ir.Constant(_vector(i16, QBLOCK), [4] * QBLOCK))
    # the two bfloat16 scales (first in the low half of the 32 bits) as float32s: lanes 0-7 the first's
    scales = builder.and_(builder.shl(_splat(builder, scales, 16), ir.Constant(_vector(i32, 16), [16] * 8 + [0] * 8)),
                          ir.Constant(_vector(i32, 16), [-65536] * 16))
    return (low, high), builder.bitcast(scales, _vector(f32, 16))


def _int4_products(builder, values, x, g, corrected=True):
    """The pair g's 16 int32 sums (lanes 0-7 block 2g's, 8-15 block 2g + 1's): its
    unpacked values (_int4_weights) times the activations xq laid out for int4 (x, an
    int16 pointer to a position's first), the corrections added unless the values are
    the nibbles - 8 already (corrected=False)."""
    i16, i32 = ir.IntType(16), ir.IntType(32)
    c = lambda v: ir.Constant(g.type, v)  # noqa: E731
    low, high = values
    base = builder.mul(g, c(INT4_PAIR_INT16S))
    x_low = _load(builder, x, base, _vector(i16, QBLOCK))
    x_high = _load(builder, x, builder.add(base, c(QBLOCK)), _vector(i16, QBLOCK))
    sums = builder.add(_multiply_add_pairs(builder, low, x_low), _multiply_add_pairs(builder, high, x_high),
                       flags=["nsw"])
    if not corrected:
        return sums
    corrections = _load(builder, x, builder.add(base, c(2 * QBLOCK)), _vector(i32, 16))
    return builder.add(sums, corrections, flags=["nsw"])


def _int4_pair(builder, q_row, s_row, x, g, single):
    """Blocks 2g and 2g + 1 of an int4 row (2g alone if single): 16 int32 sums, lanes 0-7
    the first block's, 8-15 the second's, and their scales in the same lanes."""
    values, scales = _int4_weights(builder, q_row, s_row, g, single)
    return _int4_products(builder, values, x, g), scales


@intrinsic
def decode_int4_row(typingctx, values, packed, scales, o):
    """values[:32 nb] = row o of the int4 weight (packed, scales) as float32, nb =
    scales.shape[1] blocks: each block's 16 bytes zero-extended, their low nibbles
    (values 0-15) and high nibbles (16-31) side by side in one 32-lane vector, less 8,
    times the block's bfloat16 scale widened. numba's loop over the blocks took a view
    of each block's 16 bytes and ran a loop of 16, whose setup cost more than its work
    (dev/matmul/int4_decode.py)."""
    def codegen(context, builder, signature, args):
        i8, i16, i32, f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()
        out_type, packed_type, scales_type, _ = signature.args
        out = context.make_array(out_type)(context, builder, args[0])
        q = context.make_array(packed_type)(context, builder, args[1])
        s = context.make_array(scales_type)(context, builder, args[2])
        q_row, s_row = row_pointer(builder, q, args[3]), row_pointer(builder, s, args[3])
        blocks = cgutils.unpack_tuple(builder, s.shape, 2)[1]
        destination = builder.bitcast(out.data, f32.as_pointer())
        lanes = lambda value, n=QBLOCK: ir.Constant(_vector(i32, n), [value] * n)  # noqa: E731
        with cgutils.for_range(builder, blocks) as loop:
            j = loop.index
            bytes_ = _load(builder, q_row, builder.mul(j, ir.Constant(j.type, HALF_BLOCK)), _vector(i8, HALF_BLOCK))
            words = builder.zext(bytes_, _vector(i32, HALF_BLOCK))
            low = builder.and_(words, lanes(15, HALF_BLOCK))
            high = builder.lshr(words, lanes(4, HALF_BLOCK))
            nibbles = builder.shuffle_vector(low, high, ir.Constant(_vector(i32, QBLOCK), list(range(QBLOCK))))
            centred = builder.sitofp(builder.sub(nibbles, lanes(8)), _vector(f32, QBLOCK))
            bits = builder.load(builder.gep(builder.bitcast(s_row, i16.as_pointer()), [j]))
            scale = builder.bitcast(builder.shl(builder.zext(bits, i32), ir.Constant(i32, 16)), f32)
            block = builder.fmul(centred, _splat(builder, scale, QBLOCK))
            start = builder.gep(destination, [builder.mul(j, ir.Constant(j.type, QBLOCK))])
            builder.store(block, builder.bitcast(start, _vector(f32, QBLOCK).as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(values, packed, scales, o), codegen


def row_pointer(builder, array, o):
    """An i8 pointer to the first byte of row o of a 2-D array (numba's array struct)."""
    stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
    return builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()), [builder.mul(o, stride)])


def horizontal_sum(builder, total):
    """The sum of a float vector's lanes (a power of 2 of them): halves added pairwise,
    log2(n) dependent adds, not n - 1."""
    i32 = ir.IntType(32)
    width = total.type.count
    while width > 1:
        width //= 2
        total = builder.fadd(*(builder.shuffle_vector(total, total, ir.Constant(_vector(i32, width),
                                                                                 list(range(k, k + width))))
                               for k in (0, width)))
    return builder.extract_element(total, ir.Constant(i32, 0))


@intrinsic
def dot_blocks_int16(typingctx, q, xq, scales, o0, o1, blocks):
    """(row o0's, row o1's) sum over b < blocks of scale[b] * (sum over j < 32 of
    value[32b + j] * x[32b + j]), two float32s: rows of int8 or int4 weights (q and
    scales 2-D, C-contiguous: int8 q with float32 scales, or int4's packed uint8 with
    bfloat16-bits scales) times one position's activations rounded to int16, xq, laid out
    by round_activations for the type. Each block's products are summed in int32,
    exactly (32 x 127 x 32767 < 2^31), in 16 lanes of adjacent pairs (the multiply-add
    instructions' sums); each lane converted and scaled into 16 float32 accumulators,
    added up at the end. The two rows share each load of xq, and their accumulators are
    two independent chains of multiply-adds (o1 = o0 computes one row twice)."""
    if not (isinstance(q, types.Array) and q.ndim == 2 and q.layout == "C"
            and isinstance(scales, types.Array) and scales.ndim == 2 and scales.layout == "C"
            and isinstance(xq, types.Array) and xq.ndim == 1 and xq.layout == "C" and xq.dtype == types.int16
            and all(isinstance(a, types.Integer) for a in (o0, o1, blocks))
            and (q.dtype, scales.dtype) in ((types.int8, types.float32), (types.uint8, types.uint16))):
        return None  # the code reads the arrays' memory as runs: contiguous rows only
    int4 = q.dtype == types.uint8
    signature = types.UniTuple(types.float32, 2)(q, xq, scales, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        q_array = context.make_array(sig.args[0])(context, builder, args[0])
        s_array = context.make_array(sig.args[2])(context, builder, args[2])
        x = context.make_array(sig.args[1])(context, builder, args[1]).data
        n = args[5]
        c = lambda v: ir.Constant(n.type, v)  # noqa: E731

        rows = [(row_pointer(builder, q_array, o), row_pointer(builder, s_array, o)) for o in (args[3], args[4])]
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vector(f32, 16), [_vector(f32, 16)] * 3),
                                             "llvm.fma.v16f32")
        # each row's accumulators: int8 takes two blocks a step, one each (two chains)
        accumulators = [[cgutils.alloca_once_value(builder, ir.Constant(_vector(f32, 16), [0.0] * 16))
                         for _ in range(1 if int4 else 2)] for _ in rows]

        def accumulate(acc, term):
            sums, scale = term
            builder.store(builder.call(fma, [builder.sitofp(sums, _vector(f32, 16)), scale, builder.load(acc)]), acc)

        step_bytes = QBLOCK if int4 else 2 * QBLOCK  # of each row
        with cgutils.for_range(builder, builder.sdiv(n, c(2))) as loop:  # steps of two blocks
            for q_row, _ in rows:  # the bytes PREFETCH_BYTES on: two rows are two streams the CPU does not
                for line in range(0, step_bytes, 64):  # fetch early enough on its own (dev/matmul/int4_matvec.py)
                    offset = builder.add(builder.mul(loop.index, c(step_bytes)), c(PREFETCH_BYTES + line))
                    prefetch_ir(builder, builder.gep(q_row, [offset]), PREFETCH_LOCALITY)
            for (q_row, s_row), accs in zip(rows, accumulators):
                if int4:
                    accumulate(accs[0], _int4_pair(builder, q_row, s_row, x, loop.index, single=False))
                else:
                    for half in range(2):
                        b = builder.add(builder.mul(loop.index, c(2)), c(half))
                        accumulate(accs[half], _int8_block(builder, q_row, s_row, x, b))
        with builder.if_then(builder.icmp_signed("!=", builder.srem(n, c(2)), c(0))):  # an odd last block
            last = builder.sdiv(n, c(2))
            for (q_row, s_row), accs in zip(rows, accumulators):
                accumulate(accs[0], _int4_pair(builder, q_row, s_row, x, last, single=True) if int4
                           else _int8_block(builder, q_row, s_row, x, builder.sub(n, c(1))))
        totals = []
        for accs in accumulators:
            total = builder.load(accs[0])
            for acc in accs[1:]:
                total = builder.fadd(total, builder.load(acc))
            totals.append(horizontal_sum(builder, total))
        return context.make_tuple(builder, sig.return_type, totals)

    return signature, codegen


def round_activations(xq, x, scale, q):
    """One position's activations x (C,) divided by scale, rounded to int16 (nearest,
    ties to even) into xq, in the order dot_blocks_int16 reads them for q's type: int8's
    as they are; int4's by pairs of blocks (2g, 2g + 1), values 0-15 of each, then 16-31
    of each (as the pair's nibbles unpack), then 16 int32 corrections: -8 x the block's
    sum in lanes 0 and 8 (a missing second block of an odd count: zeros)."""
    (_round_int4 if q.dtype == np.uint8 else _round_int8)(xq, x, scale)


@overload(round_activations, inline="always")
def _round_activations(xq, x, scale, q):
    if q.dtype == types.uint8:
        return lambda xq, x, scale, q: _round_int4(xq, x, scale)
    return lambda xq, x, scale, q: _round_int8(xq, x, scale)


@njit(cache=True, error_model="numpy")
def _round_int8(xq, x, scale):
    for i in range(x.shape[0]):
        xq[i] = np.int16(np.rint(x[i] / scale))


@njit(cache=True, error_model="numpy")
def _round_int4(xq, x, scale):
    blocks = x.shape[0] // QBLOCK
    corrections = xq.view(np.int32)
    for g in range((blocks + 1) // 2):
        base = g * INT4_PAIR_INT16S
        lanes = (base + 2 * QBLOCK) // 2  # where the pair's 16 corrections start, counted in int32s
        for lane in range(16):
            corrections[lanes + lane] = 0
        for half in range(2):
            b = 2 * g + half
            total = np.int32(0)
            for j in range(QBLOCK):
                v = np.int16(np.rint(x[b * QBLOCK + j] / scale)) if b < blocks else np.int16(0)
                xq[base + (j // HALF_BLOCK) * QBLOCK + half * HALF_BLOCK + j % HALF_BLOCK] = v
                total += np.int32(v)
            corrections[lanes + 8 * half] = -8 * total


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
    multiply-adds, so it is done once for all the positions that the rows meet, a row at a
    time by decode_int4_row. Any other type is read as it is, first = 0 (its weight_at
    vectorizes in the tiles)."""
    return weight, 0


@overload(rows_for_tiles, inline="always")
def _rows_for_tiles(weight, lo, hi, scratch):
    if not (isinstance(weight, types.BaseTuple) and weight[0].dtype == types.uint8):
        return lambda weight, lo, hi, scratch: (weight, 0)

    def decode(weight, lo, hi, scratch):
        packed, scales = weight
        for r in range(hi - lo):
            decode_int4_row(scratch[r], packed, scales, lo + r)
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
