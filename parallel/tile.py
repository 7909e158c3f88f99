"""Matrix products' tiles summed in registers, for prefill (LLVM IR).

numba's loops keep a running sum in a register only when it is one value (a reduction);
a tile of sums, each updated once per step of the product, stays in memory, and every
multiply-add costs a load and a store of its sum. These emit the tile's accumulators as
vector registers themselves, the micro-kernels of a matrix multiplication:
- `products_4xw`, attention's: 4 rows x WIDTH columns of sums, each step one row of b
  (a vector load) against one value of each of a's 4 rows (broadcast);
- `dots_3x4`, the float32 and bfloat16 matmul's with AVX2 code: 3 weight rows x 4
  positions of 8-lane sums along the rows (12 of the 16 registers, and the 3 rows' loads);
- `tile_blocks_int16`, the int8 and int4 matmul's: tile_rows(q) weight rows x 4 positions,
  each step a block of each row widened to int16 once and multiplied by the 4 positions'
  activations rounded to int16 (weights.dot_blocks_int16's arithmetic, the
  multiply-add instructions' sums), then scaled into float32 lanes.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ..weights import (_int4_products, _int4_weights, _int8_products, _int8_weights, _load, _splat, _vector,
                       horizontal_sum, row_pointer)

AVX512_CPUS = {"skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
               "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "znver4", "znver5",
               "x86-64-v4"}


def target_has_32_vector_registers():
    """Whether numba compiles for AVX-512 (32 vector registers; AVX2 has 16): its target
    CPU's features, or, where NUMBA_CPU_NAME names a CPU with no features given, the name."""
    try:
        from numba.core.registry import cpu_target
        codegen = cpu_target.target_context.codegen()
        name, features = codegen._get_host_cpu_name(), codegen._get_host_cpu_features()
    except (ImportError, AttributeError):  # another numba: keep the AVX-512 tiles
        return True
    if features:
        return "+avx512f" in features.split(",")
    return name in AVX512_CPUS


# The tile's columns: 4 rows x 32 float32s are 8 registers of AVX-512, 4 x 16 are 8 of
# AVX2's 16, which leaves room for the row of b and the broadcasts
WIDTH = 32 if target_has_32_vector_registers() else 16
ROWS = 4


def _widened(builder, value, numba_type, n=None):
    """A float32 (or <n x float>) from a loaded float32 or bfloat16 bits (uint16), exactly."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    if numba_type == types.float32:
        return value
    wide = i32 if n is None else _vector(i32, n)
    sixteen = ir.Constant(i32, 16) if n is None else ir.Constant(wide, [16] * n)
    return builder.bitcast(builder.shl(builder.zext(value, wide), sixteen), f32 if n is None else _vector(f32, n))


def _element_pointer(builder, array, array_type, row, column):
    """A pointer to array[row, column] of a 2-D array whose rows are contiguous (float32,
    or 16-bit integers: bfloat16 bits, int16)."""
    llvm_element = ir.FloatType() if array_type.dtype == types.float32 else ir.IntType(16)
    return builder.gep(builder.bitcast(row_pointer(builder, array, row), llvm_element.as_pointer()), [column])


@intrinsic
def products_4xw(typingctx, out, a, b, n, scale):
    """out[j, :WIDTH] = scale * (sum over k < n of a[j, k] * b[k, :WIDTH]) for j < 4, in
    float32: a 4 x WIDTH tile of a @ b. a and b hold float32s or bfloat16 bits (uint16,
    widened exactly), out float32; all three 2-D with contiguous rows (any row stride: a
    slice of the columns of a C-contiguous array), at least 4 x n, n x WIDTH and 4 x WIDTH.
    The sums run in k's order, one fused multiply-add per step."""
    def float_or_bf16(t):
        return isinstance(t, types.Array) and t.ndim == 2 and t.dtype in (types.float32, types.uint16)
    if not (isinstance(out, types.Array) and out.ndim == 2 and out.dtype == types.float32
            and float_or_bf16(a) and float_or_bf16(b) and isinstance(n, types.Integer)
            and scale == types.float32):
        return None
    signature = types.void(out, a, b, types.intp, types.float32)

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        out_type, a_type, b_type = sig.args[:3]
        arrays = [context.make_array(t)(context, builder, v) for t, v in zip(sig.args[:3], args[:3])]
        out_array, a_array, b_array = arrays
        n = args[3]
        c = lambda v: ir.Constant(n.type, v)  # noqa: E731
        vec = _vector(f32, WIDTH)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{WIDTH}f32")
        sums = [cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * WIDTH)) for _ in range(ROWS)]
        b_element = ir.FloatType() if b_type.dtype == types.float32 else ir.IntType(16)
        with cgutils.for_range(builder, n) as loop:
            k = loop.index
            row = builder.load(builder.bitcast(_element_pointer(builder, b_array, b_type, k, c(0)),
                                               _vector(b_element, WIDTH).as_pointer()), align=1)
            row = _widened(builder, row, b_type.dtype, WIDTH)
            for j, acc in enumerate(sums):
                value = _widened(builder, builder.load(_element_pointer(builder, a_array, a_type, c(j), k)), a_type.dtype)
                builder.store(builder.call(fma, [_splat(builder, value, WIDTH), row, builder.load(acc)]), acc)
        scales = _splat(builder, args[4], WIDTH)
        for j, acc in enumerate(sums):
            target = _element_pointer(builder, out_array, out_type, c(j), c(0))
            builder.store(builder.fmul(builder.load(acc), scales), builder.bitcast(target, vec.as_pointer()), align=1)
        return context.get_dummy_value()

    return signature, codegen


# The integer tile: 4 rows x 4 positions of 16-lane sums are 16 of AVX-512's 32
# registers; AVX2's 16 hold 2 x 4 of 8 lanes with two int8 rows' widened blocks beside
# them, or 1 x 4 with an int4 row's (its unpacked pair of blocks takes 4 registers):
# more rows spill, fewer load each position's block more often (dev/matmul/int_tile.py)
INT8_ROWS = 4 if target_has_32_vector_registers() else 2
INT4_ROWS = 4 if target_has_32_vector_registers() else 1
INT_LANES = 16 if target_has_32_vector_registers() else 8
POSITIONS = 4


def tile_rows(q):
    """The weight rows of tile_blocks_int16's tile for q's type (int8 or int4)."""
    return INT4_ROWS if q.dtype == np.uint8 else INT8_ROWS


@overload(tile_rows, inline="always")
def _tile_rows(q):
    rows = INT4_ROWS if q.dtype == types.uint8 else INT8_ROWS
    return lambda q: rows


@intrinsic
def tile_blocks_int16(typingctx, q, scales, xq, o, t, blocks):
    """For r < tile_rows(q) and p < 4, in that order (r-major): the sum over b < blocks of
    scale[o + r, b] * (sum over j < 32 of value[o + r, 32b + j] * xq[t + p, 32b + j]),
    float32s; what weights.dot_blocks_int16 computes for one row and one position, the
    integer sums exact: rows of int8 or int4 weights (q and scales 2-D, C-contiguous)
    times positions of activations rounded to int16 (xq 2-D, C-contiguous, each row laid
    out by weights.round_activations for the type). Each block of a row is loaded and
    widened once for the 4 positions, each block of a position once for the rows."""
    if not (isinstance(q, types.Array) and q.ndim == 2 and q.layout == "C"
            and isinstance(scales, types.Array) and scales.ndim == 2 and scales.layout == "C"
            and isinstance(xq, types.Array) and xq.ndim == 2 and xq.layout == "C" and xq.dtype == types.int16
            and all(isinstance(a, types.Integer) for a in (o, t, blocks))
            and (q.dtype, scales.dtype) in ((types.int8, types.float32), (types.uint8, types.uint16))):
        return None
    int4 = q.dtype == types.uint8
    n_rows = INT4_ROWS if int4 else INT8_ROWS
    signature = types.UniTuple(types.float32, n_rows * POSITIONS)(q, scales, xq, types.intp, types.intp,
                                                                     types.intp)

    def codegen(context, builder, sig, args):
        i32, f32 = ir.IntType(32), ir.FloatType()
        q_array, s_array, x_array = (context.make_array(t)(context, builder, v)
                                     for t, v in zip(sig.args[:3], args[:3]))
        o, t, n = args[3], args[4], args[5]
        c = lambda v: ir.Constant(n.type, v)  # noqa: E731
        rows = [(row_pointer(builder, q_array, builder.add(o, c(r))),
                 row_pointer(builder, s_array, builder.add(o, c(r)))) for r in range(n_rows)]
        xs = [_element_pointer(builder, x_array, sig.args[2], builder.add(t, c(p)), c(0)) for p in range(POSITIONS)]
        vec = _vector(f32, INT_LANES)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             f"llvm.fma.v{INT_LANES}f32")
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * INT_LANES)) for _ in xs] for _ in rows]

        def half(v, k):  # lanes 8k to 8k + 7 of a 16-lane vector
            return builder.shuffle_vector(v, v, ir.Constant(_vector(i32, 8), list(range(8 * k, 8 * k + 8))))

        def accumulate(acc, products, scale):  # products: 16 int32 sums; scale: their 16 scales
            total = builder.load(acc)
            if INT_LANES == 16:
                total = builder.call(fma, [builder.sitofp(products, vec), scale, total])
            elif not int4:  # one scale in all 16 lanes: their halves added as integers first
                folded = builder.add(half(products, 0), half(products, 1), flags=["nsw"])
                total = builder.call(fma, [builder.sitofp(folded, vec), half(scale, 0), total])
            else:  # int4: two blocks, a scale each
                for k in range(2):
                    total = builder.call(fma, [builder.sitofp(half(products, k), vec), half(scale, k), total])
            builder.store(total, acc)

        def step(index, single=False):
            for (q_row, s_row), accs in zip(rows, sums):
                if int4:  # the nibbles - 8, once for the 4 positions, not xq's corrections for each
                    values, scale = _int4_weights(builder, q_row, s_row, index, single)
                    values = [builder.sub(v, ir.Constant(v.type, [8] * v.type.count)) for v in values]
                else:
                    values, scale = _int8_weights(builder, q_row, s_row, index)
                for x, acc in zip(xs, accs):
                    if int4:
                        products = _int4_products(builder, values, x, index, corrected=False)
                    else:
                        products = _int8_products(builder, values, x, index)
                    accumulate(acc, products, scale)

        with cgutils.for_range(builder, builder.sdiv(n, c(2)) if int4 else n) as loop:  # int4: pairs of blocks
            step(loop.index)
        if int4:
            with builder.if_then(builder.icmp_signed("!=", builder.srem(n, c(2)), c(0))):  # an odd last block
                step(builder.sdiv(n, c(2)), single=True)
        totals = [horizontal_sum(builder, builder.load(acc)) for accs in sums for acc in accs]
        return context.make_tuple(builder, sig.return_type, totals)

    return signature, codegen


DOT_ROWS, DOT_LANES = 3, 8


@intrinsic
def dots_3x4(typingctx, w, x, r, t, n):
    """For j < 3 and p < 4, in that order (j-major): the sum over i < n of w[r + j, i] *
    x[t + p, i], float32s: w float32 or bfloat16 bits (uint16, widened exactly), x
    float32, both 2-D with contiguous rows. 8 lanes of each sum per step, 12 sums in
    registers (numba's loop over 12 reductions spilled them with AVX2 code: dev/README.md,
    matmul/prefill.py), the last n % 8 values one at a time."""
    if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C" and w.dtype in (types.float32, types.uint16)
            and isinstance(x, types.Array) and x.ndim == 2 and x.layout == "C" and x.dtype == types.float32
            and all(isinstance(a, types.Integer) for a in (r, t, n))):
        return None
    signature = types.UniTuple(types.float32, DOT_ROWS * POSITIONS)(w, x, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        w_type = sig.args[0]
        w_array, x_array = (context.make_array(t)(context, builder, v) for t, v in zip(sig.args[:2], args[:2]))
        r, t, n = args[2], args[3], args[4]
        c = lambda v: ir.Constant(n.type, v)  # noqa: E731
        w_rows = [_element_pointer(builder, w_array, w_type, builder.add(r, c(j)), c(0)) for j in range(DOT_ROWS)]
        x_rows = [_element_pointer(builder, x_array, sig.args[1], builder.add(t, c(p)), c(0)) for p in range(POSITIONS)]
        vec = _vector(f32, DOT_LANES)
        w_vec = _vector(ir.FloatType() if w_type.dtype == types.float32 else ir.IntType(16), DOT_LANES)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             f"llvm.fma.v{DOT_LANES}f32")
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * DOT_LANES)) for _ in x_rows]
                for _ in w_rows]
        steps = builder.sdiv(n, c(DOT_LANES))
        with cgutils.for_range(builder, steps) as loop:
            offset = builder.mul(loop.index, c(DOT_LANES))
            ws = [_widened(builder, _load(builder, row, offset, w_vec), w_type.dtype, DOT_LANES) for row in w_rows]
            for p, x_row in enumerate(x_rows):
                xv = _load(builder, x_row, offset, vec)
                for j, wv in enumerate(ws):
                    builder.store(builder.call(fma, [wv, xv, builder.load(sums[j][p])]), sums[j][p])
        totals = [[cgutils.alloca_once_value(builder, horizontal_sum(builder, builder.load(acc))) for acc in accs]
                  for accs in sums]
        with cgutils.for_range(builder, builder.sub(n, builder.mul(steps, c(DOT_LANES)))) as loop:  # the last n % 8
            i = builder.add(builder.mul(steps, c(DOT_LANES)), loop.index)
            ws = [_widened(builder, builder.load(builder.gep(row, [i])), w_type.dtype) for row in w_rows]
            for p, x_row in enumerate(x_rows):
                xv = builder.load(builder.gep(x_row, [i]))
                for j, wv in enumerate(ws):
                    total = totals[j][p]
                    builder.store(builder.fadd(builder.load(total), builder.fmul(wv, xv)), total)
        return context.make_tuple(builder, sig.return_type, [builder.load(a) for accs in totals for a in accs])

    return signature, codegen
