"""Intel AMX's tile multiply, for prefill's matmuls on the CPUs that have it (Sapphire
Rapids and later Xeons).

AMX adds eight tile registers of up to 16 rows x 64 bytes and one instruction that
multiplies two of them into a third: `tdpbf16ps c, a, b` adds to the 16 x 16 float32
tile c the products of a (16 rows x 32 bfloat16s) and b (16 x 32 bfloat16s, the other
operand laid out in pairs: b's row k/2 holds, for each of c's 16 columns n, the pair of
values k and k+1 of column n), 8192 multiply-adds an instruction, where an AVX-512 FMA
does 16. numba knows no AMX, but LLVM does: these are its intrinsics, each one
instruction, emitted from numba with @intrinsic (as weights.py and tile.py emit their
vector code). The tile numbers are constants in the instruction, so the kernels name
them as literals.

Two things stand between a program and these instructions:
- Linux gives a process the 8 KB of tile state only on request (arch_prctl
  ARCH_REQ_XCOMP_PERM, once, for every thread of the process); without it the first
  tile instruction is an illegal instruction (SIGILL);
- numba must compile for a CPU with the features amx-tile and amx-bf16 (the host's,
  which target.py gives it; not where NUMBA_CPU_NAME or NUMBA_CPU_FEATURES name another).
`AVAILABLE` says whether both hold; the matmul (parallel.kernels._matmul_amx) is used
only then.
"""

import ctypes
import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import RequireLiteralValue
from numba.extending import intrinsic

TILE_ROWS = 16  # a tile's rows: of a, 16 weight rows; of b, 16 pairs of channels; of c, their 16 rows of sums
TILE_BYTES = 64  # a row's bytes: 32 bfloat16s, or 16 float32 sums of c
TILE_CHANNELS = TILE_BYTES // 2  # the input channels one tdpbf16ps multiplies

_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158  # Linux's x86-64 numbers


def _compile_target_has_amx():
    """Whether numba compiles for a CPU with amx-tile and amx-bf16: the features it was
    given (target.py gives it the host's), or, with none given, the host's own."""
    from numba.core import config
    features = config.CPU_FEATURES
    if features is None:
        if config.CPU_NAME is not None:  # a named CPU with its own features: not asked here
            return False
        from llvmlite import binding
        try:
            features = binding.get_host_cpu_features().flatten()
        except RuntimeError:
            return False
    named = set(features.split(","))
    return {"+amx-tile", "+amx-bf16"} <= named


def _tile_state_granted():
    """Asks Linux for the tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)): True
    once granted; False on another system or where the kernel refuses it."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


AVAILABLE = _compile_target_has_amx() and _tile_state_granted()


def tile_config():
    """The 64 bytes ldtilecfg reads (palette 1): all eight tiles 16 rows of 64 bytes."""
    config = np.zeros(64, np.uint8)
    config[0] = 1  # palette 1: eight tiles of up to 16 x 64 bytes
    config[16:32].view(np.uint16)[:8] = TILE_BYTES  # each tile's bytes a row
    config[48:56] = TILE_ROWS  # and its rows
    return config


def _literals(*tiles):
    for tile in tiles:
        if not isinstance(tile, types.IntegerLiteral):
            raise RequireLiteralValue(tile)  # numba types the call again, with the constant


def _call(builder, name, argument_types, arguments):
    """Calls the LLVM intrinsic `name` (declared once in the module), which returns nothing."""
    module = builder.module
    function = module.globals.get(name) or ir.Function(module, ir.FunctionType(ir.VoidType(), argument_types), name)
    builder.call(function, arguments)


_I8, _I64, _BYTES = ir.IntType(8), ir.IntType(64), ir.IntType(8).as_pointer()


def _tile(number):
    """A tile's number (a literal type) as the i8 constant the instruction encodes."""
    return ir.Constant(_I8, number.literal_value)


def _address(context, builder, array_type, array, offset):
    """The address of the array's byte at offset (an i64)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(builder.bitcast(data, _BYTES), [offset])


@intrinsic
def load_tile_config(typingctx, config):
    """ldtilecfg: configures this thread's tiles from config (tile_config())."""
    def codegen(context, builder, signature, args):
        start = _address(context, builder, config, args[0], ir.Constant(_I64, 0))
        _call(builder, "llvm.x86.ldtilecfg", [_BYTES], [start])
        return context.get_dummy_value()
    return types.void(config), codegen


@intrinsic
def release_tiles(typingctx):
    """tilerelease: returns this thread's tiles to their initial state, as a thread that
    used none (the state Linux saves at every switch is then small again)."""
    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilerelease", [], [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def zero_tile(typingctx, tile):
    """tilezero: tile = 0."""
    _literals(tile)

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilezero", [_I8], [_tile(tile)])
        return context.get_dummy_value()
    return types.void(tile), codegen


def _tile_memory(name, doc):
    @intrinsic
    def move(typingctx, tile, array, offset, stride):
        _literals(tile)

        def codegen(context, builder, signature, args):
            pointer = _address(context, builder, array, args[1], args[2])
            _call(builder, name, [_I8, _BYTES, _I64], [_tile(tile), pointer, args[3]])
            return context.get_dummy_value()
        return types.void(tile, array, types.int64, types.int64), codegen
    move.__doc__ = doc
    return move


load_tile = _tile_memory("llvm.x86.tileloadd64", """tileloadd: the tile's 16 rows of 64 bytes from the
    array's bytes at offset, offset + stride, ... (offset and stride in bytes).""")
store_tile = _tile_memory("llvm.x86.tilestored64", """tilestored: the tile's 16 rows of 64 bytes to the
    array's bytes at offset, offset + stride, ...""")


@intrinsic
def dot_tiles_bf16(typingctx, c, a, b):
    """tdpbf16ps: c[i, n] += sum over k < 32 of a[i, k] * b[k // 2, 2 n + k % 2], the
    products of bfloat16 pairs summed into float32 (c 16 x 16 float32, a 16 x 32 and b
    16 x 32 bfloat16s)."""
    _literals(c, a, b)

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tdpbf16ps", [_I8, _I8, _I8], [_tile(c), _tile(a), _tile(b)])
        return context.get_dummy_value()
    return types.void(c, a, b), codegen

