"""llm.c's forward kernels on a static pool of K workers: the serial kernels' loops,
with the outermost independent loop split into K contiguous chunks, one per worker.

`for w in prange(K)` runs iteration w on worker w of numba's thread pool (started once,
reused by every parallel region), and chunk(n, K, w) is fixed by n and K alone: which
worker computes which output never depends on scheduling, and no two write the same
element. K is the pool size set once at start-up (`gpt --threads K`); each public
kernel passes it to its compiled body, because numba cannot cache code that asks for it
itself. Compiled with fastmath, which lets LLVM vectorize the float32 reductions and
changes the order of their additions: results match the serial kernels to a tolerance,
not bit for bit.

One rule the speed depends on: reduction loops run `for i in range(n)` from 0 with the
offset in the index; LLVM leaves a `range(lo, hi)` reduction scalar (dev/system/probe_cache.py).
Another: exponentials go through fast_exp, not math.exp (see there).
"""

import math
import time
from pathlib import Path

import numpy as np
from numba import get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ..dtypes import QBLOCK
from ..weights import (_as_float32, activations_int16_size, as_float, decode_int4_row, dot_blocks_int16,
                       float32_bits, prefetch_ir, round_activations, rows_for_tiles, scratch_for, stored, weight_at)
from . import amx
from .tile import WIDTH, dots_3x4, products_4xw, target_has_32_vector_registers, tile_blocks_int16, tile_rows

jit = njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
GELU_SCALING_FACTOR = np.float32(math.sqrt(2.0 / math.pi))
LOG2E = np.float32(1.0 / math.log(2.0))
LN2_HI, LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)  # ln 2 = HI + LO, HI exact in 9 bits
EXP_MIN, EXP_MAX = np.float32(-87.33), np.float32(88.0)  # e^x is a normal float32 in between


# Only "contract": reassociation would fold LN2_HI + LN2_LO and lose the split's precision.
@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def fast_exp(x):
    """e^x of a float32 within 1 ulp (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, a
    polynomial for e^r, times 2^n put in the exponent bits); 0 below EXP_MIN, e^EXP_MAX
    above EXP_MAX. Two reasons not to call math.exp (libm's expf), both measured by
    dev/exp/fast_exp.py: LLVM cannot vectorize a libm call, and results below EXP_MIN
    are subnormal, each costing ~100 cycles (a 124M model's logits span more than 87)."""
    xc = min(max(x, EXP_MIN), EXP_MAX)
    n = np.rint(xc * LOG2E)
    r = xc - n * LN2_HI - n * LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    two_n = _as_float32(np.uint32(np.int32(n) + np.int32(127)) << np.uint32(23))
    return np.float32(0.0) if x < EXP_MIN else (p * (r * r) + r + np.float32(1.0)) * two_n


@jit
def _empty_region(out, K):
    for w in prange(K):
        out[w] = w


def fork_join_seconds(rounds=200):
    """The median time of a parallel region that does (almost) nothing: what the pool's
    fork and join cost each kernel call (gpt --profile)."""
    K = workers
    out = np.zeros(K, np.int64)
    _empty_region(out, K)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _empty_region(out, K)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


workers = get_num_threads()  # K, the pool's size: read once (a get_num_threads call costs more than a small kernel)


def set_workers(K):
    """Every kernel from now on splits its work in K: backends.load calls it once it has
    sized numba's pool."""
    global workers
    workers = K


# Kernels with at most this many values to compute (decoding's encoder, layernorm,
# residual and GELU: one position) run on the calling thread: the pool's fork and join
# would cost more than their work (dev/profile/small_kernels.py)
ON_CALLER = 16 * 1024
regions = 0  # parallel regions started: gpt --profile's count of forks and joins


def _pool(regions_started=1):
    """K, for a kernel call that starts `regions_started` parallel regions (counted)."""
    global regions
    regions += regions_started
    return workers


def regions_started():
    """How many parallel regions the kernels have started in this process."""
    return regions


def _workers(values):
    """K for a kernel call with `values` values to compute, or 1 (its body on the
    calling thread, no parallel region) for at most ON_CALLER of them."""
    return 1 if values <= ON_CALLER else _pool()


@njit(cache=True)
def chunk(n, K, w):
    """[lo, hi) of worker w's share of range(n): K contiguous ranges that tile it, sizes
    differing by at most one."""
    return w * n // K, (w + 1) * n // K


def encoder_forward(out, inp, wte, wpe, B, T, C):
    """serial.encoder_forward; workers split the B*T positions."""
    _encoder_forward(out, inp, wte, wpe, B, T, C, _workers(B * T * C))


@jit
def _encoder_forward(out, inp, wte, wpe, B, T, C, K):
    if K == 1:
        _encode(out, inp, wte, wpe, T, C, 0, B * T)
        return
    for w in prange(K):
        lo, hi = chunk(B * T, K, w)
        _encode(out, inp, wte, wpe, T, C, lo, hi)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _encode(out, inp, wte, wpe, T, C, lo, hi):
    """The encoder's positions bt in [lo, hi) of the B*T."""
    for bt in range(lo, hi):
        b, t = bt // T, bt % T
        ix, o, p = inp[b, t], out[b, t], wpe[t]
        for i in range(C):
            o[i] = weight_at(wte, ix, i) + p[i]


def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    """serial.layernorm_forward; workers split the B*T positions."""
    _layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C, _workers(B * T * C))


@jit
def _layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C, K):
    if K == 1:
        _normalize(out, mean, rstd, inp, weight, bias, T, C, 0, B * T)
        return
    for w in prange(K):
        lo, hi = chunk(B * T, K, w)
        _normalize(out, mean, rstd, inp, weight, bias, T, C, lo, hi)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _normalize(out, mean, rstd, inp, weight, bias, T, C, lo, hi):
    """The layernorm of positions bt in [lo, hi) of the B*T."""
    eps = np.float32(1e-5)
    for bt in range(lo, hi):
        b, t = bt // T, bt % T
        x, o = inp[b, t], out[b, t]
        m = np.float32(0.0)
        for i in range(C):
            m += x[i]
        m = m / np.float32(C)
        v = np.float32(0.0)
        for i in range(C):
            xshift = x[i] - m
            v += xshift * xshift
        v = v / np.float32(C)
        s = np.float32(1.0) / math.sqrt(v + eps)
        for i in range(C):
            o[i] = s * (x[i] - m) * weight[i] + bias[i]
        mean[b, t] = m
        rstd[b, t] = s


def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    """serial.matmul_forward; workers split the OC output channels, so each reads only
    its share of the weight. With int8 or int4 weights whose rows are whole blocks, the
    inputs are rounded to int16 first (a scale per position) and multiplied in integers:
    decoding (T < 4) by _matvec_quantized, prefill by _matmul_quantized's tiles, after a
    parallel region that rounds the positions. The results move by at most 1.5e-5 of the
    largest input times the row's absolute sum, far below the weights' own rounding. A
    prefill with an inf or a NaN in its inputs takes the float32 path whole. On a CPU
    with AMX (parallel/amx.py), prefill with bfloat16, int8 and int4 weights runs on its
    tiles instead (_amx_takes says from how many positions): the inputs split into two
    bfloat16s, the products summed in float32 (_matmul_amx)."""
    if _amx_takes(weight, T, C, OC):
        high, low = amx_inputs(B, T, C)
        if _split_bf16(high, low, inp, B, T, C, _pool()):
            _matmul_amx(out, high, low, weight, bias, B, T, C, OC, _pool(), AMX_CONFIG)
            return
    if isinstance(weight, tuple) and C % QBLOCK == 0:
        q, scales = weight
        if T < 4:
            _matvec_quantized(out, inp, q, scales, bias, B, T, C, OC, _pool())
            return
        xq = np.empty((B, T, activations_int16_size(C)), np.int16)
        row_scale = np.empty((B, T), np.float32)
        _round_positions(xq, row_scale, inp, q, B, T, _pool())
        if row_scale.min() > 0:  # no inf or NaN
            _matmul_quantized(out, xq, row_scale, q, scales, bias, B, T, C, OC, _pool(), block_rows(q.shape[1] * q.itemsize))
            return
    rows = block_rows(_tile_row_bytes(weight, C)) if T >= 4 else MAX_BLOCK_ROWS  # decoding's matvec: no blocks
    _matmul_forward(out, inp, weight, bias, B, T, C, OC, _pool(), rows)


def l2_bytes(caches=Path("/sys/devices/system/cpu/cpu0/cache")):
    """A core's L2 cache in bytes, as Linux reports it (index*/level "2", size "1024K");
    512 KB (Zen 3's) where it does not."""
    units = {"K": 1 << 10, "M": 1 << 20}
    for index in sorted(caches.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip()
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError, IndexError):
            break
    return 512 << 10


L2_BYTES = l2_bytes()
MAX_BLOCK_ROWS = 64


def _tile_row_bytes(weight, C):
    """The bytes of a weight row as _matmul_forward's tiles read it: int8 as it is, int4
    decoded to float32 (scratch_for), float32 and bfloat16 as they are."""
    if isinstance(weight, tuple):
        return C * (4 if weight[0].dtype == np.uint8 else 1)
    return C * weight.itemsize


def block_rows(row_bytes):
    """Output channels per block of prefill's tiles (_matmul_forward, _matmul_quantized):
    the block's weight rows stay in L2 while every 4 positions sweep them, beside the
    positions' inputs, so they take at most a quarter of a core's L2, and at most 64 rows.
    On a 1 MB L2 that is 64 rows for C = 768 and 20 for fcproj's float32 rows (C = 3072,
    786 KB at 64 rows, against which 16 or 32 ran 1.06-1.13x with one worker and
    0.98-1.16x with two: dev/matmul/prefill_scaling.py)."""
    return max(4, min(MAX_BLOCK_ROWS, L2_BYTES // 4 // row_bytes) // 4 * 4)


# Prefill's tile: 4 x 4 keeps 16 accumulators and 8 operands in registers where there
# are 32 of them; with 16 (AVX2) numba's loop spills them, and 3 x 4 written in LLVM IR
# (tile.dots_3x4) is the most that fits: faster than numba's 2 x 4 (dev/matmul/prefill.py)
TILE_CHANNELS = 4 if target_has_32_vector_registers() else 3


@jit
def _matmul_forward(out, inp, weight, bias, B, T, C, OC, K, OB, CH=TILE_CHANNELS):
    # Tiles of CH output channels x 4 positions (_tile_4x4, _tile_3x4, _tile_2x4), where
    # each weight value loaded serves 4 positions and each input value CH channels, and
    # the worker's channels taken OB at a time (block_rows: sized from the L2), each block
    # swept by every 4 positions (their inputs stay in L1 while the block's weights come
    # from L2): about twice the rate of tiles that swept every position per pair of
    # channels (dev/matmul/prefill.py); the last T % 4 positions as _tiled_positions says.
    # Below 4 positions (decoding, T = 1) one dot product at a time reads the weights
    # fastest (dev/matmul/matvec.py), each row's dot product after asking for the lines
    # FLOAT_PREFETCH_BYTES on (_prefetch_ahead); tiles of 2 or 3 positions in registers
    # gained nothing there (dev/README.md).
    if T < 4:
        for w in prange(K):
            lo, hi = chunk(OC, K, w)
            for b in range(B):
                for o in range(lo, hi):
                    _prefetch_ahead(weight, o, hi, C, FLOAT_PREFETCH_BYTES)
                    _dot_rows(out, inp, weight, bias, b, o, o, 0, T, C)
        return
    sink = np.zeros(K, np.float32)  # _read_in_order's sums: stored, so that they are computed
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        tiles_end = lo + (hi - lo) // CH * CH
        tiled = _tiled_positions(T)
        scratch = scratch_for(weight, OB)  # int4's rows, decoded a block at a time
        for b in range(B):
            for ob in range(lo, tiles_end, OB // CH * CH):  # whole tiles a block
                oe = min(ob + OB // CH * CH, tiles_end)
                sink[w] += _read_in_order(weight, ob, oe, C)
                rows, first = rows_for_tiles(weight, ob, oe, scratch)
                for t4 in range(0, tiled, 4):
                    t = min(t4, T - 4)  # the last tile may overlap the one before
                    for o in range(ob, oe, CH):
                        _tile_x4(out, inp, rows, bias, b, o, o - first, t, C, CH)
                for o in range(ob, oe):  # a last position left over, while the block's rows are in L2
                    _dot_rows(out, inp, rows, bias, b, o, o - first, tiled, T, C)
            for o in range(tiles_end, hi):  # the last (hi - lo) % CH channels: every position
                _dot_rows(out, inp, weight, bias, b, o, o, 0, T, C)


# How far ahead of its dot product decoding's float matvec asks for a row's cache lines:
# a worker's rows are one stream, which the hardware prefetchers follow too late from one
# 4 KB page to the next; 2, 4 and 8 KB ahead all read a step's weights faster, float32
# and bfloat16, natively and with AVX2 code, within a few percent of each other
# (dev/matmul/matvec_rows.py)
FLOAT_PREFETCH_BYTES = 4096


def _prefetch_ahead(weight, o, hi, C, ahead_bytes):
    """Asks for the cache lines of a float32 or bfloat16 weight ahead_bytes past the start
    of row o, one row's worth, and none past the end of row hi - 1 (the end of
    the worker's rows); nothing for int8 and int4 weights (pairs of arrays), whose matvec
    prefetches in its LLVM IR (weights.PREFETCH_BYTES)."""


@overload(_prefetch_ahead, inline="always")
def _prefetch_ahead_typed(weight, o, hi, C, ahead_bytes):
    if isinstance(weight, types.Array) and weight.ndim == 2 and weight.layout == "C":
        def ahead(weight, o, hi, C, ahead_bytes):
            values = weight.reshape(-1)
            start = o * C + ahead_bytes // weight.itemsize
            for i in range(start, min(start + C, hi * C), 64 // weight.itemsize):
                prefetch(values, i)
        return ahead
    return lambda weight, o, hi, C, ahead_bytes: None


@njit(cache=True, inline="always")
def _tiled_positions(T):
    """How many of T >= 4 positions the matmuls' tiles of 4 compute: all of them where the
    last T % 4 are 2 or 3, their tile overlapping the one before (its positions computed
    again, stored again: the same sums), faster than 2 or 3 dot products one at a time;
    a last position left over takes its dot products, faster than a tile of 4 for one
    (dev/matmul/few_positions.py)."""
    return T if T % 4 >= 2 else T // 4 * 4


def _read_in_order(weight, lo, hi, C):
    """The sum of float32 weight rows [lo, hi), read once from the first value to the last:
    a block's rows brought into the caches as one stream before its tiles read them as CH
    streams at once, which the hardware prefetcher follows worse. 1.1-1.3x for float32
    weights at 4 to 16 positions (their tiles wait on memory), 1.04-1.07x at 64;
    bfloat16's tiles are held by their widening instead (no gain: dev/matmul/few_positions.py),
    and int8's and int4's integer tiles gained with native code and lost with AVX2 code
    (dev/README.md): the other types read their rows as they are (0)."""


@overload(_read_in_order, inline="always")
def _read_in_order_typed(weight, lo, hi, C):
    if isinstance(weight, types.Array) and weight.dtype == types.float32:
        def read(weight, lo, hi, C):
            total = np.float32(0.0)
            for o in range(lo, hi):
                row = weight[o]
                for i in range(C):
                    total += row[i]
            return total
        return read
    return lambda weight, lo, hi, C: np.float32(0.0)


def _bias_at(bias, j):
    """bias[j], or 0 without a bias (None)."""


@overload(_bias_at, inline="always")
def _bias_at_typed(bias, j):
    if isinstance(bias, types.NoneType):
        return lambda bias, j: np.float32(0.0)
    return lambda bias, j: bias[j]


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _tile_x4(out, inp, weight, bias, b, o, r, t, C, CH):
    """out[b, t:t+4, o:o+CH], CH = 2, 3 or 4: _tile_2x4, _tile_3x4 or _tile_4x4."""
    if CH == 4:
        _tile_4x4(out, inp, weight, bias, b, o, r, t, C)
    elif CH == 3:
        _tile_3x4(out, inp, weight, bias, b, o, r, t, C)
    else:
        _tile_2x4(out, inp, weight, bias, b, o, r, t, C)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _tile_2x4(out, inp, weight, bias, b, o, r, t, C):
    """out[b, t:t+4, o:o+2]: 8 dot products in 8 accumulators, one pass over C; channel
    o's weights are row r of `weight`."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
    for i in range(C):
        w0, w1 = weight_at(weight, r, i), weight_at(weight, r + 1, i)
        x0, x1, x2, x3 = inp[b, t, i], inp[b, t + 1, i], inp[b, t + 2, i], inp[b, t + 3, i]
        a00 += x0 * w0
        a01 += x1 * w0
        a02 += x2 * w0
        a03 += x3 * w0
        a10 += x0 * w1
        a11 += x1 * w1
        a12 += x2 * w1
        a13 += x3 * w1
    for j, (c0, c1, c2, c3) in enumerate(((a00, a01, a02, a03), (a10, a11, a12, a13))):
        bj = _bias_at(bias, o + j)
        out[b, t, o + j] = stored(out, c0 + bj)
        out[b, t + 1, o + j] = stored(out, c1 + bj)
        out[b, t + 2, o + j] = stored(out, c2 + bj)
        out[b, t + 3, o + j] = stored(out, c3 + bj)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _tile_4x4(out, inp, weight, bias, b, o, r, t, C):
    """out[b, t:t+4, o:o+4]: 16 dot products in 16 accumulators, one pass over C; channel
    o's weights are row r of `weight`."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = np.float32(0.0)
    for i in range(C):
        w0, w1 = weight_at(weight, r, i), weight_at(weight, r + 1, i)
        w2, w3 = weight_at(weight, r + 2, i), weight_at(weight, r + 3, i)
        x0, x1, x2, x3 = inp[b, t, i], inp[b, t + 1, i], inp[b, t + 2, i], inp[b, t + 3, i]
        a00 += x0 * w0
        a01 += x1 * w0
        a02 += x2 * w0
        a03 += x3 * w0
        a10 += x0 * w1
        a11 += x1 * w1
        a12 += x2 * w1
        a13 += x3 * w1
        a20 += x0 * w2
        a21 += x1 * w2
        a22 += x2 * w2
        a23 += x3 * w2
        a30 += x0 * w3
        a31 += x1 * w3
        a32 += x2 * w3
        a33 += x3 * w3
    for j, (c0, c1, c2, c3) in enumerate(((a00, a01, a02, a03), (a10, a11, a12, a13),
                                          (a20, a21, a22, a23), (a30, a31, a32, a33))):
        bj = _bias_at(bias, o + j)
        out[b, t, o + j] = stored(out, c0 + bj)
        out[b, t + 1, o + j] = stored(out, c1 + bj)
        out[b, t + 2, o + j] = stored(out, c2 + bj)
        out[b, t + 3, o + j] = stored(out, c3 + bj)


def _tile_3x4(out, inp, weight, bias, b, o, r, t, C):
    """out[b, t:t+4, o:o+3]: 12 dot products, one pass over C; channel o's weights are
    row r of `weight`. Float32 or bfloat16 rows: tile.dots_3x4, its sums in registers;
    int8 rows (of partial blocks, read by weight_at): a 2 x 4 tile and a row's 4 dot
    products (numba's 3 x 4 loop spills its sums)."""


@overload(_tile_3x4, inline="always")
def _tile_3x4_typed(out, inp, weight, bias, b, o, r, t, C):
    if isinstance(weight, types.Array) and weight.layout == "C" and inp.layout == "C":
        def in_registers(out, inp, weight, bias, b, o, r, t, C):
            sums = dots_3x4(weight, inp[b], r, t, C)
            for j in range(3):
                bj = _bias_at(bias, o + j)
                for p in range(4):
                    out[b, t + p, o + j] = stored(out, sums[4 * j + p] + bj)
        return in_registers

    def two_and_one(out, inp, weight, bias, b, o, r, t, C):
        _tile_2x4(out, inp, weight, bias, b, o, r, t, C)
        _dot_rows(out, inp, weight, bias, b, o + 2, r + 2, t, t + 4, C)
    return two_and_one


INT16_MAX = np.float32(32767.0)
EXPONENT_BITS = np.uint32(0x7F800000)  # all ones: inf or NaN
U32 = np.uint32


@njit(cache=True, fastmath=True, error_model="numpy")
def _int16_scale(x):
    """The scale that rounds the row x to int16 (max |x| / 32767; 1 for a row of zeros),
    or -1 if x holds an inf or a NaN. Their test is on the bits: fastmath assumes
    neither exists, and would fold a float test away."""
    bits = x.view(np.uint32)
    for i in range(x.shape[0]):
        if bits[i] & EXPONENT_BITS == EXPONENT_BITS:
            return np.float32(-1.0)
    largest = np.float32(0.0)
    for i in range(x.shape[0]):
        largest = max(largest, abs(x[i]))
    return largest / INT16_MAX if largest > 0 else np.float32(1.0)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _round_position(xq, row_scale, inp, q, b, t):
    """Position (b, t) of inp rounded to int16 into xq[b, t] (weights.round_activations,
    in the order the integer products read for q's type) with the scale max|row| / 32767,
    kept in row_scale[b, t]; a row with an inf or a NaN is left unrounded, its scale -1
    (rounding would hide them)."""
    s = _int16_scale(inp[b, t])
    row_scale[b, t] = s
    if s > 0:
        round_activations(xq[b, t], inp[b, t], s, q)


@jit
def _round_positions(xq, row_scale, inp, q, B, T, K):
    """_round_position for every position; workers split the B*T positions."""
    for w in prange(K):
        lo, hi = chunk(B * T, K, w)
        for bt in range(lo, hi):
            _round_position(xq, row_scale, inp, q, bt // T, bt % T)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _dot_pairs(out, xq, row_scale, q, scales, bias, b, t, lo, hi, blocks):
    """out[b, t, lo:hi] from the rounded position xq[b, t], two channels at a time
    (dot_blocks_int16: the two rows share each load of xq; an odd last row is computed
    twice, stored once)."""
    for o in range(lo, hi, 2):
        o1 = min(o + 1, hi - 1)
        first, second = dot_blocks_int16(q, xq[b, t], scales, o, o1, blocks)
        for j, total in ((o, first), (o1, second)):
            b0 = _bias_at(bias, j)
            out[b, t, j] = stored(out, total * row_scale[b, t] + b0)


@jit
def _matvec_quantized(out, inp, q, scales, bias, B, T, C, OC, K):
    """out (B,T,OC) = inp @ dequantized (q, scales).T + bias, int8 or int4, for a few
    positions: each input row rounded to int16 (_round_position, on the calling thread:
    a few rows), then the outputs two at a time (_dot_pairs), each times its row's scale.
    A row with an inf or a NaN takes the float32 path."""
    xq = np.empty((B, T, activations_int16_size(C)), np.int16)
    row_scale = np.empty((B, T), np.float32)
    for b in range(B):
        for t in range(T):
            _round_position(xq, row_scale, inp, q, b, t)
    blocks = C // QBLOCK
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for b in range(B):
            for t in range(T):
                if row_scale[b, t] < 0:  # an inf or a NaN: as the float32 path computes it
                    for o in range(lo, hi):
                        _dot_rows(out, inp, (q, scales), bias, b, o, o, t, t + 1, C)
                    continue
                _dot_pairs(out, xq, row_scale, q, scales, bias, b, t, lo, hi, blocks)


@jit
def _matmul_quantized(out, xq, row_scale, q, scales, bias, B, T, C, OC, K, OB):
    """out (B,T,OC) = the rounded inputs xq (_round_positions, no inf or NaN) @
    dequantized (q, scales).T + bias, int8 or int4, for T >= 4 (prefill): tiles of R =
    tile_rows(q) channels x 4 positions in registers (tile.tile_blocks_int16), each times
    its position's scale; the worker's channels taken OB at a time and each block swept
    by every 4 positions (the last T % 4 as _tiled_positions says), as _matmul_forward's
    tiles are. The last (hi - lo) % R channels: two channels at a
    time (_dot_pairs). Below 4 positions, _matvec_quantized (a tile of 4 whose extra
    positions were zeros was slower at T = 2: dev/README.md)."""
    blocks = C // QBLOCK
    R = tile_rows(q)
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        tiles_end = lo + (hi - lo) // R * R
        tiled = _tiled_positions(T)
        for b in range(B):
            positions = xq[b]
            for ob in range(lo, tiles_end, OB):
                oe = min(ob + OB, tiles_end)
                for t4 in range(0, tiled, 4):
                    t = min(t4, T - 4)  # the last tile may overlap the one before
                    for o in range(ob, oe, R):
                        sums = tile_blocks_int16(q, scales, positions, o, t, blocks)
                        for r in range(R):
                            b0 = _bias_at(bias, o + r)
                            for p in range(4):
                                out[b, t + p, o + r] = stored(out, sums[r * 4 + p] * row_scale[b, t + p] + b0)
                for t in range(tiled, T):  # a last position left over, while the block's rows are in L2
                    _dot_pairs(out, xq, row_scale, q, scales, bias, b, t, ob, oe, blocks)
            for t in range(T):
                _dot_pairs(out, xq, row_scale, q, scales, bias, b, t, tiles_end, hi, blocks)


# AMX (parallel/amx.py): the tiles' numbers, and how many positions make it worth them
INPUTS_HIGH, INPUTS_LOW, ROWS_HIGH, ROWS_LOW = 4, 5, 6, 7  # the sums: tiles 0-3, one per group of 16 rows
AMX_GROUPS = 4  # groups of TILE_ROWS output channels a worker's tiles sum at once
# From how many positions AMX is the faster (dev/matmul/amx.py): bfloat16 weights go as
# they are, int8 and int4 rows are decoded into two bfloat16s first, which costs more
# than their vector tiles below 32 positions
AMX_MIN_POSITIONS_BF16, AMX_MIN_POSITIONS_INT = 4, 32
AMX_CONFIG = amx.tile_config()


def _amx_takes(weight, T, C, OC):
    """Whether _matmul_amx computes this matmul: bfloat16 weights from 4 positions on,
    int8 and int4 from 32 (not float32, the exact type, whose values bfloat16 would
    round), of whole tiles' channels and rows."""
    if not amx.AVAILABLE or T < AMX_MIN_POSITIONS_BF16:  # decoding: no more to ask
        return False
    if isinstance(weight, tuple):
        enough = T >= AMX_MIN_POSITIONS_INT
    else:
        enough = weight.dtype == np.uint16
    return enough and C % amx.TILE_CHANNELS == 0 and OC % amx.TILE_ROWS == 0


def amx_inputs(B, T, C):
    """The zeroed arrays _split_bf16 writes inp (B,T,C) into: two (B, TG, KB, 16, 32)
    uint16, TG = T / 16 rounded up (the extra positions zeros), KB = C / 32."""
    shape = (B, -(-T // amx.TILE_ROWS), C // amx.TILE_CHANNELS, amx.TILE_ROWS, amx.TILE_CHANNELS)
    return np.zeros(shape, np.uint16), np.zeros(shape, np.uint16)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _split(x):
    """A finite x as two bfloat16s' bits: high = x cut to bfloat16 (its top 16 bits),
    low = the rest (exact in float32, below 2^-7 |x|) rounded, their sum within 2^-16
    of x. Shifts and one add in 32 bits (each result wrapped in uint32: numba's integer
    arithmetic is 64-bit, and its 64-bit lanes ran at half the speed), which LLVM
    vectorizes."""
    high = U32(float32_bits(x) >> U32(16))
    rest = float32_bits(x - _as_float32(U32(high << U32(16))))
    return np.uint16(high), np.uint16(U32(rest + U32(0x8000)) >> U32(16))


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _rounded(x):
    """A finite x rounded to the nearest bfloat16 (ties to even), as bits; integer
    arithmetic only, as _split's."""
    bits = float32_bits(x)
    return np.uint16(U32(U32(bits + U32(0x7FFF)) + U32(U32(bits >> U32(16)) & U32(1))) >> U32(16))


@jit
def _split_bf16(high, low, inp, B, T, C, K):
    """inp (B,T,C) into amx_inputs' arrays, as tdpbf16ps's second operand: for position
    t = 16 tg + p and channel c = 32 kb + 2 k + j, [b, tg, kb, k, 2 p + j] holds its
    high part in `high` and its low part in `low` (_split). False if inp holds an inf or
    a NaN (the low part would be a NaN), which the callers leave to the float32 path."""
    finite = np.ones(K, np.bool_)
    for w in prange(K):
        lo, hi = chunk(B * T, K, w)
        for bt in range(lo, hi):
            b, t = bt // T, bt % T
            tg, p = t // amx.TILE_ROWS, t % amx.TILE_ROWS
            bits = inp[b, t].view(np.uint32)
            for c in range(C):
                if bits[c] & EXPONENT_BITS == EXPONENT_BITS:
                    finite[w] = False
            for c in range(C):
                kb, k, j = c // amx.TILE_CHANNELS, c % amx.TILE_CHANNELS // 2, c % 2
                high[b, tg, kb, k, 2 * p + j], low[b, tg, kb, k, 2 * p + j] = _split(inp[b, t, c])
    return finite.all()


def _amx_rows(weight, lo, hi, scratch):
    """(high, low, first, split): the weight's rows [lo, hi) as bfloat16 rows for the
    tiles, row o being high[o - first], plus low[o - first] where split. A bfloat16
    weight is read as it is (first = 0). int8 and int4 rows are decoded into scratch
    (2, rows, C) uint16, first = lo: int8's values _split into two bfloat16s (one,
    rounded, would add 4% to the int8 rounding's own error), int4's rounded to one
    (it adds 0.01% to int4's; dev/matmul/amx.py measures both)."""


@overload(_amx_rows, inline="always")
def _amx_rows_typed(weight, lo, hi, scratch):
    if not isinstance(weight, types.BaseTuple):
        return lambda weight, lo, hi, scratch: (weight, weight, 0, False)
    if weight[0].dtype == types.uint8:
        def int4(weight, lo, hi, scratch):
            packed, scales = weight
            row = np.empty(scratch.shape[2], np.float32)
            for o in range(lo, hi):  # decoded to float32 first (LLVM IR), then rounded
                decode_int4_row(row, packed, scales, o)
                high = scratch[0, o - lo]
                for c in range(row.shape[0]):
                    high[c] = _rounded(row[c])
            return scratch[0], scratch[0], lo, False
        return int4

    def int8(weight, lo, hi, scratch):
        q, scales = weight
        n = q.shape[1] // max(scales.shape[1], 1)  # QBLOCK, as a number LLVM does not unroll (rows_for_tiles)
        for o in range(lo, hi):
            row, high, low = q[o], scratch[0, o - lo], scratch[1, o - lo]
            for j in range(scales.shape[1]):  # views of a block, which LLVM vectorizes (a 2-D index it does not)
                d = scales[o, j]
                block, block_high, block_low = row[j * n:(j + 1) * n], high[j * n:(j + 1) * n], low[j * n:(j + 1) * n]
                for k in range(n):
                    block_high[k], block_low[k] = _split(np.float32(block[k]) * d)
        return scratch[0], scratch[1], lo, True
    return int8


def _amx_scratch(weight, rows, C):
    """The uint16 scratch _amx_rows needs for `rows` rows of C channels of this weight."""


@overload(_amx_scratch, inline="always")
def _amx_scratch_typed(weight, rows, C):
    if isinstance(weight, types.BaseTuple):
        return lambda weight, rows, C: np.empty((2, rows, C), np.uint16)
    return lambda weight, rows, C: np.empty((2, 0, 0), np.uint16)


@njit(cache=True, error_model="numpy", inline="always")
def _multiply_group(g, rows_high, rows_low, row, stride, split):
    """Sums tile g (a literal: the tile's number) += a group's 16 rows, from byte `row`
    of rows_high (and rows_low where split), 32 channels of them, times the 16
    positions' inputs in tiles INPUTS_HIGH and INPUTS_LOW: the high rows by both parts,
    the low rows by the high part."""
    amx.load_tile(ROWS_HIGH, rows_high, row, stride)
    amx.dot_tiles_bf16(g, ROWS_HIGH, INPUTS_HIGH)
    amx.dot_tiles_bf16(g, ROWS_HIGH, INPUTS_LOW)
    if split:
        amx.load_tile(ROWS_LOW, rows_low, row, stride)
        amx.dot_tiles_bf16(g, ROWS_LOW, INPUTS_HIGH)


@jit
def _matmul_amx(out, high, low, weight, bias, B, T, C, OC, K, config):
    """out (B,T,OC) = inp @ weight.T + bias on AMX's tiles, inp split into the bfloat16
    parts high and low (_split_bf16). Each worker takes its output channels AMX_GROUPS
    groups of 16 at a time (_amx_rows: int8's and int4's decoded into the worker's
    scratch, in L2) and sweeps them with every 16 positions: per 32 channels, both parts
    of the 16 positions loaded once into tiles, then each group's rows, which multiply
    both (two tdpbf16ps into the same float32 sums; a third, the rows' low part by the
    inputs' high, where the weight is int8), and the sums stored, plus the bias. The
    products are those of the inputs to 2^-16 and of the rows _amx_rows gives, summed in
    float32: a bfloat16 weight's exactly, int8's to 2^-16, int4's rounded to bfloat16."""
    groups, KB, TG = OC // amx.TILE_ROWS, C // amx.TILE_CHANNELS, high.shape[1]
    stride, tile = C * 2, amx.TILE_ROWS * amx.TILE_BYTES  # bytes of a weight row, of a tile
    group = amx.TILE_ROWS * stride  # bytes of a group's rows
    for w in prange(K):
        g0, g1 = chunk(groups, K, w)
        if g0 == g1:
            continue
        amx.load_tile_config(config)
        scratch = _amx_scratch(weight, AMX_GROUPS * amx.TILE_ROWS, C)
        sums = np.empty((AMX_GROUPS, amx.TILE_ROWS, amx.TILE_ROWS), np.float32)
        for gc in range(g0, g1, AMX_GROUPS):
            n, o0 = min(AMX_GROUPS, g1 - gc), gc * amx.TILE_ROWS
            rows_high, rows_low, first, split = _amx_rows(weight, o0, o0 + n * amx.TILE_ROWS, scratch)
            for b in range(B):
                for tg in range(TG):
                    amx.zero_tile(0)
                    amx.zero_tile(1)
                    amx.zero_tile(2)
                    amx.zero_tile(3)
                    for kb in range(KB):
                        at = ((b * TG + tg) * KB + kb) * tile
                        amx.load_tile(INPUTS_HIGH, high, at, amx.TILE_BYTES)
                        amx.load_tile(INPUTS_LOW, low, at, amx.TILE_BYTES)
                        row = (o0 - first) * stride + kb * amx.TILE_BYTES  # group 0's first row, these channels
                        _multiply_group(0, rows_high, rows_low, row, stride, split)
                        if n > 1:
                            _multiply_group(1, rows_high, rows_low, row + group, stride, split)
                        if n > 2:
                            _multiply_group(2, rows_high, rows_low, row + 2 * group, stride, split)
                        if n > 3:
                            _multiply_group(3, rows_high, rows_low, row + 3 * group, stride, split)
                    amx.store_tile(0, sums, 0, amx.TILE_BYTES)  # sums[g, r, p]: row o0 + 16 g + r, position 16 tg + p
                    amx.store_tile(1, sums, tile, amx.TILE_BYTES)
                    amx.store_tile(2, sums, 2 * tile, amx.TILE_BYTES)
                    amx.store_tile(3, sums, 3 * tile, amx.TILE_BYTES)
                    for p in range(min(amx.TILE_ROWS, T - tg * amx.TILE_ROWS)):
                        for g in range(n):
                            for r in range(amx.TILE_ROWS):
                                o = o0 + g * amx.TILE_ROWS + r
                                out[b, tg * amx.TILE_ROWS + p, o] = stored(out, sums[g, r, p] + _bias_at(bias, o))
        amx.release_tiles()


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _dot_rows(out, inp, weight, bias, b, o, r, t_start, T, C):
    """out[b, t, o] for t in [t_start, T), one dot product at a time; channel o's
    weights are row r of `weight`."""
    b0 = _bias_at(bias, o)
    for t in range(t_start, T):
        a0 = np.float32(0.0)
        for i in range(C):
            a0 += inp[b, t, i] * weight_at(weight, r, i)
        out[b, t, o] = stored(out, a0 + b0)


MANY_QUERIES = 16  # from this many queries on (prefill), pass 1 runs by keys (_scores_by_keys)


@njit(cache=True, fastmath=True, error_model="numpy")
def _scores_by_keys(preatt, inp, B, T, C, NH, lo, hi, scale):
    """Pass 1 of attention for the (batch, head, query) triples [lo, hi): preatt[b, h,
    tq, t2] = q . k * scale for t2 <= t. A dot product of hs = 64 values ends in a
    horizontal sum that costs more than its 4 vector FMAs; here each head's keys are
    copied transposed, once for all its queries, so that a query's scores are built as
    hs sums over the keys, vectorized along the keys, none horizontal
    (dev/attention/prefill.py); 4 queries x WIDTH keys at a time, their sums in
    registers (parallel.tile.products_4xw)."""
    Tq = preatt.shape[2]
    hs = C // NH
    keys = np.empty((hs, T), np.float32)  # one head's keys, transposed: this worker's scratch
    for b in range(B):
        for h in range(NH):
            base = (b * NH + h) * Tq
            tq0, tq1 = max(lo - base, 0), min(hi - base, Tq)
            if tq0 >= tq1:
                continue
            n = T - Tq + tq1  # the keys that the last of these queries sees
            # transposed 16 keys at a time, each column's 16 values stored together: key by
            # key, every value went to a line of its own and cost more than the scores'
            # tiles (dev/attention/prefill.py)
            blocked = n // 16 * 16
            for t0 in range(0, blocked, 16):
                rows = inp[b, t0:t0 + 16, C + h * hs:C + (h + 1) * hs]
                for i in range(hs):
                    column = keys[i, t0:t0 + 16]
                    for j in range(16):
                        column[j] = as_float(rows[j, i])
            for t2 in range(blocked, n):
                k = inp[b, t2, C + h * hs:C + (h + 1) * hs]
                for i in range(hs):
                    keys[i, t2] = as_float(k[i])
            tq = tq0
            while tq + 4 <= tq1:  # 4 queries per sweep of the keys
                t = T - Tq + tq
                queries = inp[b, t:t + 4, h * hs:(h + 1) * hs]
                # up to the last query's key (the others' extra scores are masked later):
                # WIDTH keys at a time in registers (parallel.tile), then the rest
                tiled = (t + 4) // WIDTH * WIDTH
                for c in range(0, tiled, WIDTH):
                    products_4xw(preatt[b, h, tq:tq + 4, c:c + WIDTH], queries, keys[:, c:c + WIDTH], hs, scale)
                s0, s1 = preatt[b, h, tq, tiled:t + 4], preatt[b, h, tq + 1, tiled:t + 4]
                s2, s3 = preatt[b, h, tq + 2, tiled:t + 4], preatt[b, h, tq + 3, tiled:t + 4]
                rest = t + 4 - tiled
                for t2 in range(rest):
                    s0[t2] = s1[t2] = s2[t2] = s3[t2] = np.float32(0.0)
                for i in range(hs):
                    k = keys[i, tiled:t + 4]
                    q0, q1 = as_float(queries[0, i]), as_float(queries[1, i])
                    q2, q3 = as_float(queries[2, i]), as_float(queries[3, i])
                    for t2 in range(rest):
                        kv = k[t2]
                        s0[t2] += q0 * kv
                        s1[t2] += q1 * kv
                        s2[t2] += q2 * kv
                        s3[t2] += q3 * kv
                for t2 in range(rest):
                    s0[t2] *= scale
                    s1[t2] *= scale
                    s2[t2] *= scale
                    s3[t2] *= scale
                tq += 4
            for tq in range(tq, tq1):  # the last few, one at a time
                _scores_of_one(preatt, inp, keys, b, h, tq, T - Tq + tq, C, hs, scale)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _scores_of_one(preatt, inp, keys, b, h, tq, t, C, hs, scale):
    """_scores_by_keys for one query, at position t."""
    q = inp[b, t, h * hs:(h + 1) * hs]
    scores = preatt[b, h, tq, :t + 1]
    for t2 in range(t + 1):
        scores[t2] = np.float32(0.0)
    for i in range(hs):
        qi, k = as_float(q[i]), keys[i, :t + 1]
        for t2 in range(t + 1):
            scores[t2] += qi * k[t2]
    for t2 in range(t + 1):
        scores[t2] *= scale


@njit(cache=True, fastmath=True, error_model="numpy")
def _values_by_queries(out, att, inp, B, T, C, NH, lo, hi):
    """Pass 4 of attention for the (batch, head, query) triples [lo, hi), queries 4 at a
    time: out[b, tq, head h] (zeroed) += att[b, h, tq, t2] * value t2, each value row
    read once for 4 queries (att is 0 past each query's position), their sums WIDTH
    channels at a time in registers (parallel.tile.products_4xw) where hs is a multiple
    of WIDTH."""
    Tq = att.shape[2]
    hs = C // NH
    for b in range(B):
        for h in range(NH):
            base = (b * NH + h) * Tq
            tq0, tq1 = max(lo - base, 0), min(hi - base, Tq)
            tq = tq0
            while tq + 4 <= tq1 and hs % WIDTH == 0:  # the head's outputs WIDTH at a time in registers
                t = T - Tq + tq
                for c in range(h * hs, (h + 1) * hs, WIDTH):
                    products_4xw(out[b, tq:tq + 4, c:c + WIDTH], att[b, h, tq:tq + 4], inp[b, :, 2 * C + c:2 * C + c + WIDTH],
                                 t + 4, np.float32(1.0))
                tq += 4
            while tq + 4 <= tq1:  # (heads of another size)
                t = T - Tq + tq
                o0, o1 = out[b, tq, h * hs:(h + 1) * hs], out[b, tq + 1, h * hs:(h + 1) * hs]
                o2, o3 = out[b, tq + 2, h * hs:(h + 1) * hs], out[b, tq + 3, h * hs:(h + 1) * hs]
                for t2 in range(t + 4):
                    v = inp[b, t2, 2 * C + h * hs:2 * C + (h + 1) * hs]
                    a0, a1 = att[b, h, tq, t2], att[b, h, tq + 1, t2]
                    a2, a3 = att[b, h, tq + 2, t2], att[b, h, tq + 3, t2]
                    for i in range(hs):
                        vi = as_float(v[i])
                        o0[i] += a0 * vi
                        o1[i] += a1 * vi
                        o2[i] += a2 * vi
                        o3[i] += a3 * vi
                tq += 4
            for tq in range(tq, tq1):  # the last few, one at a time
                o = out[b, tq, h * hs:(h + 1) * hs]
                for t2 in range(T - Tq + tq + 1):
                    a, v = att[b, h, tq, t2], inp[b, t2, 2 * C + h * hs:2 * C + (h + 1) * hs]
                    for i in range(hs):
                        o[i] += a * as_float(v[i])


def attention_forward(out, preatt, att, inp, B, T, C, NH):
    """serial.attention_forward; workers split the B*NH*Tq
    (batch, head, query) triples, head-major, so that each gets whole heads when K
    divides NH: later queries cost more, and a query-major split would give the last
    worker the most work. Decoding (one query) splits the keys instead
    (_decode_attention)."""
    if out.shape[1] == 1:
        _decode_attention(out, preatt, att, inp, B, T, C, NH, _pool())
    else:
        _attention_forward(out, preatt, att, inp, B, T, C, NH, _pool())


@intrinsic
def prefetch(typingctx, array, index):
    """Asks the CPU to bring array[index]'s cache line toward L1 (llvm.prefetch: a read,
    kept in every level), for a 1-D array of any layout (a decoding cache of B > 1 is a
    strided view); no effect on results."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        prefetch_ir(builder, cgutils.get_item_pointer(context, builder, aryty, ary, [index]))
        return context.get_dummy_value()

    return types.void(array, index), codegen


KEY_BLOCK = 32  # decoding's keys per block: their rows (K and V) stay in L2 between the passes
AHEAD = 8  # rows: how far ahead decoding prefetches (dev/attention/decode_kernel.py)


@jit
def _decode_attention(out, preatt, att, inp, B, T, C, NH, K):
    # One query at position T - 1 (Tq = 1). Each worker takes a contiguous share of the
    # T keys for every head, and streams their rows: the keys and values of all heads in
    # one run per row (split by heads, a worker read 1/K of each row and the prefetcher
    # lost the stream: 1.4-2x slower at 1,000 positions, dev/attention/split_keys.py). Its
    # softmax is online, by blocks of KEY_BLOCK keys: a running max per head, the sum and
    # the weighted values rescaled when it grows; the caller then joins the K parts
    # (flash-decoding's split-K).
    #
    # Two things keep the arithmetic from outlasting the reads (dev/attention/decode_kernel.py):
    # - the prefetches of the row AHEAD are spread over the heads, each head asking for its
    #   own key and value lines as it uses the current row's (48 in a burst per row left
    #   the memory idle while the values were summed), written out line by line at offsets
    #   from the current row: a loop over a head's lines cost as much again in spilled
    #   registers on AVX2 code;
    # - the inner loops index whole rows with unsigned offsets (a head's query, key or
    #   value at offset + i), not slices: a slice per head and key cost more than its 64
    #   multiply-adds, and numba checks a signed index for wrapping around, which stops
    #   LLVM vectorizing; the query is widened and scaled once.
    hs = C // NH
    n, uC = np.uint64(hs), np.uint64(C)
    line = np.uint64(64 // inp.itemsize)  # elements a cache line
    step = np.uint64(inp.strides[1] // inp.itemsize)  # elements from one position's row to the next
    wide = hs * inp.itemsize > 128  # a head's run of keys (of values) spans 4 lines, not 2 (float32)
    scale = np.float32(1.0 / math.sqrt(np.float32(hs)))
    part_max = np.full((K, B, NH), -np.inf, np.float32)
    part_sum = np.zeros((K, B, NH), np.float32)
    part_out = np.zeros((K, B, C), np.float32)
    queries = np.empty((B, C), np.float32)
    for b in range(B):
        for i in range(C):
            queries[b, i] = as_float(inp[b, T - 1, i]) * scale
    for w in prange(K):
        lo, hi = chunk(T, K, w)
        for b in range(B):
            m, s, o, q = part_max[w, b], part_sum[w, b], part_out[w, b], queries[b]
            for b0 in range(lo, hi, KEY_BLOCK):
                b1 = min(b0 + KEY_BLOCK, hi)
                for t2 in range(b0, b1):  # the scores of the block's keys
                    k = inp[b, t2]
                    far = np.uint64(AHEAD) * step if t2 + AHEAD < hi else np.uint64(0)
                    for h in range(NH):
                        qh, kh = np.uint64(h * hs), np.uint64(C + h * hs)
                        ahead = kh + far  # this head's keys AHEAD rows on, then its values
                        prefetch(k, ahead)
                        prefetch(k, ahead + line)
                        prefetch(k, ahead + uC)
                        prefetch(k, ahead + uC + line)
                        if wide:
                            prefetch(k, ahead + np.uint64(2) * line)
                            prefetch(k, ahead + np.uint64(3) * line)
                            prefetch(k, ahead + uC + np.uint64(2) * line)
                            prefetch(k, ahead + uC + np.uint64(3) * line)
                        val = np.float32(0.0)
                        for i in range(n):
                            val += q[qh + i] * as_float(k[kh + i])
                        preatt[b, h, 0, t2] = val
                for h in range(NH):  # their weights against the running max
                    scores, weights = preatt[b, h, 0, b0:b1], att[b, h, 0, b0:b1]
                    block_max = m[h]
                    for j in range(b1 - b0):
                        block_max = max(block_max, scores[j])
                    if block_max > m[h]:
                        f = fast_exp(m[h] - block_max)
                        s[h] *= f
                        oh = o[h * hs:(h + 1) * hs]
                        for i in range(hs):
                            oh[i] *= f
                        m[h] = block_max
                    total = np.float32(0.0)
                    for j in range(b1 - b0):
                        e = fast_exp(scores[j] - block_max)
                        weights[j] = e
                        total += e
                    s[h] += total
                quads = b0 + (b1 - b0) // 4 * 4
                for t2 in range(b0, quads, 4):  # the weighted values, 4 keys a pass over the output
                    v0, v1, v2, v3 = inp[b, t2], inp[b, t2 + 1], inp[b, t2 + 2], inp[b, t2 + 3]
                    for h in range(NH):
                        a0, a1 = att[b, h, 0, t2], att[b, h, 0, t2 + 1]
                        a2, a3 = att[b, h, 0, t2 + 2], att[b, h, 0, t2 + 3]
                        oh, vh = np.uint64(h * hs), np.uint64(2 * C + h * hs)
                        for i in range(n):
                            o[oh + i] += ((a0 * as_float(v0[vh + i]) + a1 * as_float(v1[vh + i]))
                                          + (a2 * as_float(v2[vh + i]) + a3 * as_float(v3[vh + i])))
                for t2 in range(quads, b1):
                    v = inp[b, t2]
                    for h in range(NH):
                        a, oh, vh = att[b, h, 0, t2], np.uint64(h * hs), np.uint64(2 * C + h * hs)
                        for i in range(n):
                            o[oh + i] += a * as_float(v[vh + i])
            for h in range(NH):  # the weights against this worker's last max
                scores, weights = preatt[b, h, 0, lo:hi], att[b, h, 0, lo:hi]
                for j in range(hi - lo):
                    weights[j] = fast_exp(scores[j] - m[h])
    for b in range(B):  # the K parts joined: one max and one sum per head
        for h in range(NH):
            largest = np.float32(-np.inf)
            for w in range(K):
                largest = max(largest, part_max[w, b, h])
            total = np.float32(0.0)
            for w in range(K):
                total += part_sum[w, b, h] * fast_exp(part_max[w, b, h] - largest)
            oh = out[b, 0, h * hs:(h + 1) * hs]
            for i in range(hs):
                oh[i] = np.float32(0.0)
            for w in range(K):
                f = fast_exp(part_max[w, b, h] - largest) / total
                lo, hi = chunk(T, K, w)
                weights, p = att[b, h, 0, lo:hi], part_out[w, b, h * hs:(h + 1) * hs]
                for j in range(hi - lo):
                    weights[j] *= f
                for i in range(hs):
                    oh[i] += f * p[i]


@jit
def _attention_forward(out, preatt, att, inp, B, T, C, NH, K):
    # The serial kernel's passes, but each pass walks the key (value) rows once for all
    # of a worker's heads, not once per head, so that decoding streams its share of each
    # row instead of fetching 256 bytes every 9 KB; and the inner loops run over 1-D
    # views of one head, which LLVM vectorizes (with the offsets in a 3-D index it did
    # not, dev/attention/inner.py).
    Tq = out.shape[1]
    hs = C // NH
    scale = np.float32(1.0 / math.sqrt(np.float32(hs)))
    for w in prange(K):
        lo, hi = chunk(B * NH * Tq, K, w)
        lanes = np.empty(LANES, np.float32)  # _largest's scratch
        if Tq >= MANY_QUERIES:
            _scores_by_keys(preatt, inp, B, T, C, NH, lo, hi, scale)
        for b in range(B):
            for tq in range(Tq):
                # this worker's heads for (b, tq): those whose triple (b*NH + h)*Tq + tq
                # lies in [lo, hi), a contiguous range of h
                base = b * NH * Tq + tq
                h0, h1 = max(0, -((base - lo) // Tq)), min(NH, -((base - hi) // Tq))
                t = T - Tq + tq  # the position of this query
                # pass 1: query . key for every position up to t
                for t2 in range(t + 1 if Tq < MANY_QUERIES else 0):
                    for h in range(h0, h1):
                        q = inp[b, t, h * hs:(h + 1) * hs]
                        k = inp[b, t2, C + h * hs:C + (h + 1) * hs]
                        val = np.float32(0.0)
                        for i in range(hs):
                            val += as_float(q[i]) * as_float(k[i])
                        preatt[b, h, tq, t2] = val * scale
                # passes 2 and 3, per head: a stable softmax; the causal mask zeroes the future
                for h in range(h0, h1):
                    scores, weights = preatt[b, h, tq, :t + 1], att[b, h, tq]
                    maxval = _largest(scores, lanes)
                    expsum = np.float32(0.0)
                    for t2 in range(t + 1):
                        expv = fast_exp(scores[t2] - maxval)
                        expsum += expv
                        weights[t2] = expv
                    expsum_inv = np.float32(0.0) if expsum == 0.0 else np.float32(1.0) / expsum
                    for t2 in range(t + 1):
                        weights[t2] *= expsum_inv
                    future = weights[t + 1:]  # a view: a signed offset in the index stops LLVM vectorizing
                    for t2 in range(future.shape[0]):
                        future[t2] = np.float32(0.0)
                    for i in range(hs):
                        out[b, tq, h * hs + i] = np.float32(0.0)
                # pass 4: the attention-weighted sum of the values
                for t2 in range(t + 1 if Tq < MANY_QUERIES else 0):
                    for h in range(h0, h1):
                        a = att[b, h, tq, t2]
                        o = out[b, tq, h * hs:(h + 1) * hs]
                        v = inp[b, t2, 2 * C + h * hs:2 * C + (h + 1) * hs]
                        for i in range(hs):
                            o[i] += a * as_float(v[i])
        if Tq >= MANY_QUERIES:
            _values_by_queries(out, att, inp, B, T, C, NH, lo, hi)


def gelu_forward(out, inp, N):
    """serial.gelu_forward; workers split N."""
    _gelu_forward(out, inp, N, _workers(N))


@jit
def _gelu_forward(out, inp, N, K):
    if K == 1:
        _gelu(out[:N], inp[:N])
        return
    for w in prange(K):
        lo, hi = chunk(N, K, w)
        _gelu(out[lo:hi], inp[lo:hi])


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _gelu(out, inp):
    """out = GELU(inp), 1-D. 0.5 x (1 + tanh(u)) = x - x / (e^2u + 1): one fast_exp
    instead of libm's tanhf, which LLVM leaves scalar."""
    for j in range(inp.shape[0]):
        x = inp[j]
        u = GELU_SCALING_FACTOR * (x + np.float32(0.044715) * x * x * x)
        out[j] = x - x / (fast_exp(np.float32(2.0) * u) + np.float32(1.0))


def residual_forward(out, inp1, inp2, N):
    """serial.residual_forward; workers split N."""
    _residual_forward(out, inp1, inp2, N, _workers(N))


@jit
def _residual_forward(out, inp1, inp2, N, K):
    if K == 1:
        _add(out[:N], inp1[:N], inp2[:N])
        return
    for w in prange(K):
        lo, hi = chunk(N, K, w)
        _add(out[lo:hi], inp1[lo:hi], inp2[lo:hi])


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _add(out, inp1, inp2):
    """out = inp1 + inp2, 1-D."""
    for j in range(inp1.shape[0]):
        out[j] = inp1[j] + inp2[j]


def fused_residual_forward(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C):
    """serial.fused_residual_forward; workers split the N positions, each adding and
    normalizing its own in one region (decoding's one position: on the calling thread)."""
    _fused_residual_forward(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C, _workers(N * C))


@jit
def _fused_residual_forward(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C, K):
    if K == 1:
        _add_and_normalize(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C, 0, N)
        return
    for w in prange(K):
        lo, hi = chunk(N, K, w)
        _add_and_normalize(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C, lo, hi)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _add_and_normalize(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C, lo, hi):
    """Positions [lo, hi) of the N: _add, then _normalize."""
    _add(residual.reshape(N * C)[lo * C:hi * C], inp1.reshape(N * C)[lo * C:hi * C], inp2.reshape(N * C)[lo * C:hi * C])
    _normalize(normed.reshape(1, N, C), mean.reshape(1, N), rstd.reshape(1, N), residual.reshape(1, N, C),
               weight, bias, N, C, lo, hi)


def softmax_forward(probs, logits, B, T, V, Vp):
    """serial.softmax_forward; workers split the B*T rows, or, with fewer rows than
    workers (decoding: one), each row's V entries."""
    _softmax_forward(probs, logits, B, T, V, Vp, _pool(1 if B * T >= workers else 3 * B * T))


LANES = 16  # running maxima in _largest: a 512-bit vector of float32


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _largest(x, lanes):
    """max(x), x 1-D, in LANES running maxima (lanes: the caller's scratch of LANES
    float32s, allocated once, not per row): LLVM vectorizes those, and leaves a single
    running max scalar (dev/sampling/sampler.py, whose draw met it first)."""
    n = x.shape[0]
    for j in range(LANES):
        lanes[j] = -np.inf
    for i in range(n // LANES):
        for j in range(LANES):
            lanes[j] = max(lanes[j], x[LANES * i + j])
    largest = lanes.max()
    for i in range(n // LANES * LANES, n):
        largest = max(largest, x[i])
    return largest


@jit
def _softmax_forward(probs, logits, B, T, V, Vp, K):
    # the loops run over 1-D views of a row (or of a worker's part of it): with the
    # offsets in a 3-D index inside a parallel region LLVM did not vectorize them
    # (dev/profile/small_kernels.py shows the same for the elementwise kernels)
    if B * T >= K:
        for w in prange(K):
            lo, hi = chunk(B * T, K, w)
            lanes = np.empty(LANES, np.float32)
            for bt in range(lo, hi):
                b, t = bt // T, bt % T
                x, p = logits[b, t, :V], probs[b, t, :V]
                maxval = _largest(x, lanes)
                total = np.float32(0.0)
                for i in range(V):
                    p[i] = fast_exp(x[i] - maxval)
                    total += p[i]
                for i in range(V):
                    p[i] /= total
                for i in range(V, Vp):
                    probs[b, t, i] = np.float32(0.0)
        return
    part = np.empty(K, np.float32)  # each worker's max, then its sum: K values, not a buffer
    for bt in range(B * T):
        b, t = bt // T, bt % T
        for w in prange(K):
            lo, hi = chunk(V, K, w)
            part[w] = _largest(logits[b, t, lo:hi], np.empty(LANES, np.float32))
        maxval = part.max()
        for w in prange(K):
            lo, hi = chunk(V, K, w)
            x, p = logits[b, t, lo:hi], probs[b, t, lo:hi]
            total = np.float32(0.0)
            for j in range(hi - lo):
                e = fast_exp(x[j] - maxval)
                p[j] = e
                total += e
            part[w] = total
        total = part.sum()
        for w in prange(K):
            lo, hi = chunk(V, K, w)
            p = probs[b, t, lo:hi]
            for j in range(hi - lo):
                p[j] /= total
        for i in range(V, Vp):
            probs[b, t, i] = np.float32(0.0)
