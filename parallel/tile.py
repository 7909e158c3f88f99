"""A matrix product's tile summed in registers, for prefill's attention (LLVM IR).

numba's loops keep a running sum in a register only when it is one value (a reduction);
a tile of sums, each updated once per step of the product, stays in memory, and every
multiply-add costs a load and a store of its sum. `products_4xw` emits the tile's
accumulators as vector registers itself, the micro-kernel of a matrix multiplication:
4 rows x WIDTH columns of sums, each step one row of b (a vector load) against one value
of each of a's 4 rows (broadcast).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..weights import _splat, _vector

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
    """A pointer to array[row, column] of a 2-D array whose rows are contiguous."""
    element = array_type.dtype
    stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
    i8 = ir.IntType(8)
    start = builder.gep(builder.bitcast(array.data, i8.as_pointer()), [builder.mul(row, stride)])
    llvm_element = ir.FloatType() if element == types.float32 else ir.IntType(16)
    return builder.gep(builder.bitcast(start, llvm_element.as_pointer()), [column])


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
