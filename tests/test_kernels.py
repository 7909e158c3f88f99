"""Each kernel of each backend against a numpy formula, on odd shapes: T = 1, C not a
multiple of 8, NH = 1, B = 2. The kernels compute in float32 and the formulas in float64,
so the tolerances are a few float32 roundings of values of order 1."""

import inspect

import numpy as np
import pytest

import importlib

from gptpy import backends, serial
from gptpy.checkpoint import bf16_to_float32, float32_to_bf16
from gptpy.model import KERNELS
from gptpy.parallel.kernels import ON_CALLER
from gptpy.dtypes import QBLOCK
from gptpy.weights import quantize_int8
from reference import causal_attention, gelu, layernorm, softmax

SHAPES = [(1, 1, 20, 1), (1, 7, 36, 3), (2, 5, 12, 4)]  # (B, T, C, NH)
# the parallel backend runs kernels of at most ON_CALLER values on the calling thread,
# larger ones on the pool: shapes and sizes on both sides of it
POOLED_SHAPES = [(2, 300, 64, 4)]
SIZES = [1, 37, 1000, ON_CALLER + 1, 3 * ON_CALLER + 5]
assert all(B * T * C > ON_CALLER for B, T, C, _ in POOLED_SHAPES) and all(B * T * C <= ON_CALLER for B, T, C, _ in SHAPES)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(params=backends.available())
def kernels(request):
    return backends.load(request.param).kernels


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("package", ["serial", "parallel", "gpu"])
def test_every_backend_has_the_serial_kernels_with_their_signatures(package):
    module = importlib.import_module(f"gptpy.{package}")  # gpu imports without a GPU
    for name in KERNELS + ("residual_forward",):
        serial_signature = inspect.signature(getattr(serial, name).py_func)
        backend_kernel = getattr(module, name)
        backend_signature = inspect.signature(getattr(backend_kernel, "py_func", backend_kernel))
        assert backend_signature == serial_signature, name


@pytest.mark.parametrize("B,T,C,NH", SHAPES + POOLED_SHAPES)
def test_encoder_forward(kernels, B, T, C, NH):
    rng = np.random.default_rng(1)
    Vp, maxT = 13, max(T, 9)
    wte, wpe = rand(rng, Vp, C), rand(rng, maxT, C)
    inp = rng.integers(0, Vp, (B, T)).astype(np.int32)
    out = np.full((B, T, C), np.nan, dtype=np.float32)
    kernels.encoder_forward(out, inp, wte, wpe, B, T, C)
    np.testing.assert_allclose(out, wte[inp] + wpe[:T], **TOL)


@pytest.mark.parametrize("B,T,C,NH", SHAPES + POOLED_SHAPES)
def test_layernorm_forward(kernels, B, T, C, NH):
    rng = np.random.default_rng(2)
    inp = rand(rng, B, T, C, scale=3.0) + 1.5
    weight, bias = rand(rng, C), rand(rng, C)
    out = np.full((B, T, C), np.nan, dtype=np.float32)
    mean, rstd = np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
    kernels.layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C)
    x = inp.astype(np.float64)
    np.testing.assert_allclose(out, layernorm(x, weight, bias), **TOL)
    np.testing.assert_allclose(mean, x.mean(-1), **TOL)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.var(-1) + 1e-5), rtol=1e-5)


@pytest.mark.parametrize("B,T,C,NH", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matmul_forward(kernels, B, T, C, NH, with_bias):
    rng = np.random.default_rng(3)
    OC = 3 * C + 1
    inp, weight = rand(rng, B, T, C), rand(rng, OC, C)
    bias = rand(rng, OC) if with_bias else None
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    kernels.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    expected = inp.astype(np.float64) @ weight.T.astype(np.float64) + (bias if with_bias else 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(C))


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("rows", [4, 20, 64])  # a block: parallel.kernels.block_rows
@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("B,T,C,OC", [(1, 4, 20, 7), (1, 9, 36, 131), (2, 66, 40, 250), (1, 17, 64, 130),
                                    (1, 7, 20, 11), (2, 6, 36, 50)])  # T % 4: 0, 1, 2, 1, 3, 2
def test_both_prefill_tiles_give_the_product(rows, channels, dtype, B, T, C, OC, with_bias):
    """The parallel matmul's tiles of 2, 3 and 4 channels (3 AVX2's, 4 AVX-512's, chosen
    by the target: parallel.kernels.TILE_CHANNELS), each with its tails, with a bias and
    without (the LM head's), whatever this host."""
    from gptpy.parallel.kernels import _matmul_forward
    rng = np.random.default_rng(channels + OC)
    w = rand(rng, OC, C)
    weight = {"fp32": w, "bf16": float32_to_bf16(w), "int8": quantize_int8(w)}[dtype]
    values = {"fp32": w, "bf16": bf16_to_float32(float32_to_bf16(w)), "int8": dequantize(*quantize_int8(w))}[dtype]
    inp, bias = rand(rng, B, T, C), (rand(rng, OC) if with_bias else None)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    _matmul_forward(out, inp, weight, bias, B, T, C, OC, 2, rows, channels)
    expected = inp.astype(np.float64) @ values.T.astype(np.float64) + (bias if with_bias else 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(C))


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("B,T,C,OC", [(1, 1, 20, 7), (2, 3, 36, 131), (1, 2, 1030, 9), (1, 1, 768, 200)])
def test_the_decoding_matvec_gives_the_product(dtype, workers, B, T, C, OC):
    """The parallel matmul below 4 positions: one dot product at a time, each after asking
    for the lines parallel.kernels.FLOAT_PREFETCH_BYTES ahead, which run past the worker's
    rows and past the weight's end, for 1 to 3 workers; int8 weights whose rows are not
    whole blocks take this loop too."""
    from gptpy.parallel.kernels import _matmul_forward
    rng = np.random.default_rng(C + OC)
    w = rand(rng, OC, C)
    weight = {"fp32": w, "bf16": float32_to_bf16(w), "int8": quantize_int8(w)}[dtype]
    values = {"fp32": w, "bf16": bf16_to_float32(float32_to_bf16(w)), "int8": dequantize(*quantize_int8(w))}[dtype]
    inp, bias = rand(rng, B, T, C), rand(rng, OC)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    _matmul_forward(out, inp, weight, bias, B, T, C, OC, workers, 64)
    expected = inp.astype(np.float64) @ values.T.astype(np.float64) + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(C))


@pytest.mark.parametrize("B,T,C,NH", SHAPES + [(1, 23, 36, 3), (2, 18, 12, 4)])  # prefill's paths: >= 16 queries
def test_attention_forward(kernels, B, T, C, NH):
    rng = np.random.default_rng(4)
    inp = rand(rng, B, T, 3 * C, scale=2.0)
    out = np.full((B, T, C), np.nan, dtype=np.float32)
    preatt = np.zeros((B, NH, T, T), np.float32)
    att = np.full((B, NH, T, T), np.nan, dtype=np.float32)
    kernels.attention_forward(out, preatt, att, inp, B, T, C, NH)
    for b in range(B):
        np.testing.assert_allclose(out[b], causal_attention(inp[b].astype(np.float64), NH), **TOL)
    # the scores: causal, each row a distribution
    assert np.all(att[:, :, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
    hs = C // NH
    q = inp[..., :C].reshape(B, T, NH, hs).astype(np.float64)
    k = inp[..., C:2 * C].reshape(B, T, NH, hs).astype(np.float64)
    scores = np.einsum("bthi,bshi->bhts", q, k) / np.sqrt(hs)
    lower = np.tril(np.ones((T, T), bool))
    np.testing.assert_allclose(preatt[..., lower], scores[..., lower], **TOL)


@pytest.mark.parametrize("Tq", [1, 3, 17])
def test_attention_forward_of_the_last_positions_only(kernels, Tq):
    """The KV cache: queries for the last Tq positions, keys and values for all T."""
    rng = np.random.default_rng(8)
    B, T, C, NH = 1, 30, 36, 3
    inp = rand(rng, B, T, 3 * C, scale=2.0)
    out = np.full((B, Tq, C), np.nan, dtype=np.float32)
    preatt, att = np.zeros((B, NH, Tq, T), np.float32), np.zeros((B, NH, Tq, T), np.float32)
    kernels.attention_forward(out, preatt, att, inp, B, T, C, NH)
    np.testing.assert_allclose(out[0], causal_attention(inp[0].astype(np.float64), NH)[-Tq:], **TOL)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("K", [1, 2, 3, 7])
@pytest.mark.parametrize("B,T,scale", [(1, 1, 2.0), (1, 2, 2.0), (2, 5, 2.0), (1, 70, 2.0), (1, 200, 8.0)])
def test_decodings_attention_splits_the_keys_for_any_pool(K, B, T, scale):
    """The parallel decode path (one query; parallel.kernels._decode_attention): each of
    K workers takes a share of the keys (none, with more workers than keys), blocks of
    32 with a running max that grows (scale 8: large scores, far apart), joined on the
    caller: out, preatt and att as the formulas have them."""
    from gptpy.parallel.kernels import _decode_attention
    rng = np.random.default_rng(T + K)
    C, NH = 36, 3
    inp = rand(rng, B, T, 3 * C, scale=scale)
    inp[:, :, C:2 * C] *= np.linspace(0.5, 2, T, dtype=np.float32)[None, :, None]  # later keys score higher
    out = np.full((B, 1, C), np.nan, np.float32)
    preatt, att = np.full((B, NH, 1, T), np.nan, np.float32), np.full((B, NH, 1, T), np.nan, np.float32)
    _decode_attention(out, preatt, att, inp, B, T, C, NH, K)
    hs = C // NH
    for b in range(B):
        np.testing.assert_allclose(out[b], causal_attention(inp[b].astype(np.float64), NH)[-1:], **TOL)
        q = inp[b, -1, :C].reshape(NH, hs).astype(np.float64)
        k = inp[b, :, C:2 * C].reshape(T, NH, hs).astype(np.float64)
        scores = np.einsum("hi,shi->hs", q, k) / np.sqrt(hs)
        np.testing.assert_allclose(preatt[b, :, 0], scores, **TOL)
        np.testing.assert_allclose(att[b, :, 0], softmax(scores), rtol=1e-4, atol=1e-7)  # scores up to ~100: 1e-5 of them moves e^score by 1e-5


@pytest.mark.parametrize("backend", ["serial", "parallel"])  # the cuda backend copies contiguous float32 caches
@pytest.mark.parametrize("kv", ["fp32", "bf16"])
def test_decoding_reads_a_cache_that_is_a_strided_view(backend, kv):
    """With B > 1, the first T positions of a cache with room for more are a strided view
    (model.Activations' qkv[l]): decoding's attention (prefetches included) reads it as
    it reads a contiguous copy, to the order of its additions (LLVM vectorizes a strided
    view's loops its own way)."""
    kernels = backends.load(backend).kernels
    rng = np.random.default_rng(11)
    B, T, C, NH = 2, 41, 36, 3
    full = rand(rng, B, T + 9, 3 * C, scale=2.0)
    if kv == "bf16":
        full = float32_to_bf16(full)
    view = full[:, :T]
    assert not view.flags.c_contiguous
    outs = []
    for inp in (view, np.ascontiguousarray(view)):
        out = np.full((B, 1, C), np.nan, np.float32)
        preatt, att = np.zeros((B, NH, 1, T), np.float32), np.zeros((B, NH, 1, T), np.float32)
        kernels.attention_forward(out, preatt, att, inp, B, T, C, NH)
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], **TOL)
    for b in range(B):
        np.testing.assert_allclose(outs[0][b], causal_attention((bf16_to_float32(view[b]) if kv == "bf16" else view[b]).astype(np.float64), NH)[-1:], **TOL)


@pytest.mark.parametrize("a_type,b_type", [("fp32", "fp32"), ("fp32", "bf16"), ("bf16", "fp32"), ("bf16", "bf16")])
def test_a_tile_of_products_is_numpys_product(a_type, b_type):
    """parallel.tile.products_4xw: 4 x WIDTH of scale * a @ b, from views with row strides
    and offsets, float32 or bfloat16 operands widened exactly; nothing written outside the
    tile."""
    from numba import njit
    from gptpy.parallel.tile import WIDTH, products_4xw
    run = njit(lambda out, a, b, n, scale: products_4xw(out, a, b, n, scale))
    rng = np.random.default_rng(12)
    a32, b32 = rand(rng, 6, 70), rand(rng, 70, 3 * WIDTH)
    a = a32 if a_type == "fp32" else float32_to_bf16(a32)
    b = b32 if b_type == "fp32" else float32_to_bf16(b32)
    widened = [x if x.dtype == np.float32 else bf16_to_float32(x) for x in (a, b)]
    out = np.full((5, 2 * WIDTH), np.nan, np.float32)
    for n in (1, 50):
        run(out[1:, 3:3 + WIDTH], a[2:, 5:], b[7:, WIDTH:], n, np.float32(0.5))
        expected = 0.5 * widened[0][2:6, 5:5 + n].astype(np.float64) @ widened[1][7:7 + n, WIDTH:2 * WIDTH]
        np.testing.assert_allclose(out[1:, 3:3 + WIDTH], expected, rtol=1e-5, atol=1e-6 * np.sqrt(n))
        assert np.isnan(out[0]).all() and np.isnan(out[1:, :3]).all() and np.isnan(out[1:, 3 + WIDTH:]).all()


@pytest.mark.parametrize("kv", ["fp32", "bf16"])
@pytest.mark.parametrize("B,T,Tq,C,NH", [(1, 75, 75, 128, 2), (2, 75, 75, 128, 2), (1, 75, 21, 128, 2), (1, 40, 40, 96, 3)])
@pytest.mark.parametrize("backend", ["serial", "parallel"])  # the cuda backend copies contiguous float32 caches
def test_prefills_attention_in_tiles(backend, kv, B, T, Tq, C, NH):
    """Prefill (Tq >= 16 queries) with heads of 64 and 32 values and more keys than a
    tile: the parallel backend's sums in registers (parallel.tile, WIDTH keys and
    channels at a time, then the rest), also from a strided cache (B = 2, room for more
    positions) and a continued prefill (Tq < T): the formulas' outputs and scores."""
    kernels = backends.load(backend).kernels
    rng = np.random.default_rng(T + Tq + B)
    full = rand(rng, B, T + 5, 3 * C, scale=2.0)
    if kv == "bf16":
        full = float32_to_bf16(full)
    inp = full[:, :T]
    values = (bf16_to_float32(inp) if kv == "bf16" else inp).astype(np.float64)
    out = np.full((B, Tq, C), np.nan, np.float32)
    preatt, att = np.zeros((B, NH, Tq, T), np.float32), np.zeros((B, NH, Tq, T), np.float32)
    kernels.attention_forward(out, preatt, att, inp, B, T, C, NH)
    hs = C // NH
    for b in range(B):
        np.testing.assert_allclose(out[b], causal_attention(values[b], NH)[-Tq:], **TOL)
        q = values[b, -Tq:, :C].reshape(Tq, NH, hs)
        k = values[b, :, C:2 * C].reshape(T, NH, hs)
        scores = np.einsum("thi,shi->hts", q, k) / np.sqrt(hs)
        visible = np.arange(T)[None, :] <= np.arange(T - Tq, T)[:, None]
        np.testing.assert_allclose(preatt[b][:, visible], scores[:, visible], **TOL)


def test_the_parallel_backends_exp_is_within_an_ulp_of_exp():
    from gptpy.parallel.kernels import EXP_MAX, EXP_MIN, fast_exp
    x = np.linspace(EXP_MIN, EXP_MAX, 200_001, dtype=np.float32)
    e = np.array([fast_exp(v) for v in x[::97]] + [fast_exp(v) for v in x[-50:]], dtype=np.float32)
    exact = np.exp(np.concatenate([x[::97], x[-50:]]).astype(np.float64))
    assert (np.abs(e - exact) <= 1.01 * np.spacing(exact.astype(np.float32))).all()
    assert fast_exp(np.float32(-200)) == 0 and fast_exp(np.float32(-np.inf)) == 0
    assert fast_exp(np.float32(1000)) == np.float32(np.exp(np.float64(EXP_MAX)))  # finite: gelu's x / (e + 1) is 0


@pytest.mark.parametrize("N", SIZES)
def test_gelu_forward(kernels, N):
    rng = np.random.default_rng(5)
    inp = rand(rng, N, scale=4.0)
    inp[:2] = [60.0, -60.0][:N]  # tanh at +-1 exactly, e^2u beyond float32
    out = np.full(N, np.nan, dtype=np.float32)
    kernels.gelu_forward(out, inp, N)
    np.testing.assert_allclose(out, gelu(inp.astype(np.float64)), **TOL)


@pytest.mark.parametrize("N", SIZES)
def test_residual_forward(kernels, N):
    rng = np.random.default_rng(6)
    inp1, inp2 = rand(rng, N), rand(rng, N)
    out = np.full(N, np.nan, dtype=np.float32)
    kernels.residual_forward(out, inp1, inp2, N)
    np.testing.assert_array_equal(out, inp1 + inp2)  # one float32 addition: exact


@pytest.mark.parametrize("B,T,C,NH", SHAPES + POOLED_SHAPES)
def test_fused_residual_forward_is_residual_then_layernorm(kernels, B, T, C, NH):
    """Against its definition, serial residual_forward then layernorm_forward, on the
    (B,T,C) buffers the forward pass gives it (N = B*T positions)."""
    rng = np.random.default_rng(8)
    inp1, inp2 = rand(rng, B, T, C, scale=2.0), rand(rng, B, T, C) + 0.5
    weight, bias = rand(rng, C), rand(rng, C)
    outputs = [np.full((B, T, C), np.nan, np.float32), np.full((B, T, C), np.nan, np.float32),
               np.full((B, T), np.nan, np.float32), np.full((B, T), np.nan, np.float32)]
    kernels.fused_residual_forward(*outputs, inp1, inp2, weight, bias, B * T, C)
    residual = np.empty((B, T, C), np.float32)
    serial.residual_forward(residual.reshape(-1), inp1.reshape(-1), inp2.reshape(-1), B * T * C)
    expected = [residual, np.empty((B, T, C), np.float32), np.empty((B, T), np.float32), np.empty((B, T), np.float32)]
    serial.layernorm_forward(expected[1], expected[2], expected[3], residual, weight, bias, B, T, C)
    np.testing.assert_array_equal(outputs[0], expected[0])  # one float32 addition: exact
    for got, want in zip(outputs[1:], expected[1:]):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("B,T,V,Vp,spread", [(1, 1, 7, 7, 5.0), (1, 3, 101, 128, 5.0), (2, 2, 50, 64, 5.0),
                                              (1, 1, 5000, 5120, 40.0)])  # exps far below float32's normals
def test_softmax_forward(kernels, B, T, V, Vp, spread):
    rng = np.random.default_rng(7)
    logits = rand(rng, B, T, Vp, scale=spread)
    probs = np.full((B, T, Vp), np.nan, dtype=np.float32)
    kernels.softmax_forward(probs, logits, B, T, V, Vp)
    np.testing.assert_allclose(probs[..., :V], softmax(logits[..., :V].astype(np.float64)), rtol=1e-5, atol=1e-7)
    assert np.all(probs[..., V:] == 0)  # the padding is never sampled


# bfloat16 weights (weights.py): widening is exact and the kernels keep their order of
# operations, so a bfloat16 weight gives exactly what its widened float32 copy gives

@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("B,T,C,NH", SHAPES + [(1, 9, 36, 3), (1, 66, 40, 1)])  # the matmul's tiles and their tails
def test_bf16_weights_compute_what_their_float32_widening_does(backend, B, T, C, NH):
    kernels = backends.load(backend).kernels
    rng = np.random.default_rng(9)
    OC = 3 * C + 1
    bits = float32_to_bf16(rand(rng, OC, C))
    wide = bf16_to_float32(bits)
    inp, bias = rand(rng, B, T, C), rand(rng, OC)
    out_bits, out_wide = (np.full((B, T, OC), np.nan, dtype=np.float32) for _ in range(2))
    kernels.matmul_forward(out_bits, inp, bits, bias, B, T, C, OC)
    kernels.matmul_forward(out_wide, inp, wide, bias, B, T, C, OC)
    np.testing.assert_array_equal(out_bits, out_wide)
    expected = inp.astype(np.float64) @ wide.T.astype(np.float64) + bias
    np.testing.assert_allclose(out_bits, expected, rtol=1e-5, atol=1e-5 * np.sqrt(C))
    tokens = rng.integers(0, OC, (B, T)).astype(np.int32)
    wpe = rand(rng, T, C)
    enc_bits, enc_wide = (np.full((B, T, C), np.nan, dtype=np.float32) for _ in range(2))
    kernels.encoder_forward(enc_bits, tokens, bits, wpe, B, T, C)
    kernels.encoder_forward(enc_wide, tokens, wide, wpe, B, T, C)
    np.testing.assert_array_equal(enc_bits, enc_wide)
    np.testing.assert_array_equal(enc_bits, wide[tokens] + wpe[:T])


# int8 weights (weights.py): a value is q * its block's scale, in float32; the kernels
# compute with those values what they compute with float32 weights

def quantize_reference(w, block=QBLOCK):
    """numpy's (q, scales) of a float32 (OC, C): absmax / 127 per block of a row."""
    OC, C = w.shape
    nb = -(-C // block)
    q, scales = np.zeros((OC, C), np.int8), np.zeros((OC, nb), np.float32)
    for j in range(nb):
        g = w[:, j * block:(j + 1) * block]
        scales[:, j] = np.abs(g).max(axis=1) / np.float32(127)
        divisor = np.where(scales[:, j] == 0, np.float32(1), scales[:, j])
        q[:, j * block:(j + 1) * block] = np.rint(g / divisor[:, None]).astype(np.int8)
    return q, scales


def dequantize(q, scales):
    return q.astype(np.float32) * np.repeat(scales, QBLOCK, axis=1)[:, :q.shape[1]]


@pytest.mark.parametrize("C", [QBLOCK, 36, 5, 768])  # whole blocks, a partial last block, one partial block
@pytest.mark.parametrize("bits", [False, True])
def test_quantize_int8_is_numpys_absmax_rounding(C, bits):
    rng = np.random.default_rng(10)
    w = rand(rng, 40, C) * rng.uniform(1e-3, 1e3, (40, 1)).astype(np.float32)  # rows of every scale
    w[3] = 0  # an all-zero row: scale 0, q 0
    w[5, :QBLOCK] = 0
    w[7, 0] = 2 * np.abs(w[7]).max()  # an outlier: its block's values lose precision, not the others'
    source = float32_to_bf16(w) if bits else w
    q, scales = quantize_int8(source)
    expected_q, expected_scales = quantize_reference(bf16_to_float32(source) if bits else w)
    np.testing.assert_array_equal(q, expected_q)
    np.testing.assert_array_equal(scales, expected_scales)
    assert np.abs(q.astype(int)).max() == 127 and not q[3].any()
    stacked_q, stacked_scales = quantize_int8(np.stack([source, source]))  # (L, OC, C) as a layer stack
    assert stacked_q.shape == (2, 40, C) and stacked_scales.shape == (2, 40, -(-C // QBLOCK))
    np.testing.assert_array_equal(stacked_q[1], expected_q)
    # the rounding error is at most half a step of each block's scale
    exact = bf16_to_float32(source) if bits else w
    error = np.abs(dequantize(q, scales) - exact)
    assert (error <= np.repeat(scales, QBLOCK, axis=1)[:, :C] * 0.5001).all()


def test_quantize_int8_goes_by_chunks_of_rows_and_says_each(monkeypatch):
    """A loader drops each chunk's file pages when told it is done: every row is told,
    once, in order, and the chunks give what one pass gives."""
    from gptpy import weights
    rng = np.random.default_rng(12)
    w = rand(rng, 3, 50, 40)  # a stack of 150 rows of 160 bytes
    whole = quantize_int8(w)
    monkeypatch.setattr(weights, "CHUNK_BYTES", 160 * 16)  # 16 rows a chunk
    told = []
    q, scales = quantize_int8(w, lambda lo, hi: told.append((lo, hi)))
    assert told == [(lo, min(lo + 16, 150)) for lo in range(0, 150, 16)]
    np.testing.assert_array_equal(q, whole[0])
    np.testing.assert_array_equal(scales, whole[1])


def int16_rounded(x):
    """Each row of x (..., C) as the parallel int8 matvec rounds it: to a multiple of
    max |row| / 32767, nearest (ties to even)."""
    scale = np.abs(x).max(axis=-1, keepdims=True) / np.float32(32767)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    return (np.rint(x / scale) * scale).astype(np.float64)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("B,C,T", [(1, 768, 1), (1, 3072, 1), (1, 64, 3), (1, 32, 1), (1, 96, 2), (1, 160, 1),
                                   (1, 1600, 1),  # decoding (T < 4); blocks: 4k, 1, 2, 3, 5, 50
                                   (1, 768, 64), (1, 96, 9), (2, 160, 6), (1, 32, 4), (2, 3072, 5),
                                   (2, 96, 7)])  # prefill: T % 4 = 0, 1, 2, 0, 1, 3
def test_the_integer_products_move_the_results_by_the_int16_rounding_only(dtype, B, C, T):
    """int8 and int4, decoding's matvec (weights.dot_blocks_int16) and prefill's tiles
    (parallel.tile.tile_blocks_int16, with their last positions and channels), against
    the exact product of the dequantized weights with the unrounded inputs: within 3e-5
    of max |input| x the weight row's absolute sum (the rounding's bound is 1.5e-5), and
    a row with an inf or a NaN as the float32 path has it."""
    from test_int4 import dequantize4
    from gptpy.weights import quantize_int4
    kernels = backends.load("parallel").kernels
    rng = np.random.default_rng(C)
    OC = 2 * C + 3
    q, scales = (quantize_int8 if dtype == "int8" else quantize_int4)(rand(rng, OC, C))
    values = (dequantize(q, scales) if dtype == "int8" else dequantize4(q, scales, C)).astype(np.float64)
    inp = rand(rng, B, T, C, scale=3.0)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    kernels.matmul_forward(out, inp, (q, scales), None, B, T, C, OC)
    exact = inp.astype(np.float64) @ values.T
    bound = 3e-5 * np.abs(inp).max(axis=-1, keepdims=True) * np.abs(values).sum(axis=1) + 1e-5 * np.abs(exact)
    assert (np.abs(out - exact) <= bound).all()
    assert (out != exact.astype(np.float32)).any()  # it did round: this is the int16 path
    inp[-1, -1, 5] = np.nan
    kernels.matmul_forward(out, inp, (q, scales), None, B, T, C, OC)
    assert np.isnan(out[-1, -1]).all() and np.isfinite(out[:-1]).all() and np.isfinite(out[-1, :-1]).all()


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("B,T,C,NH", SHAPES + [(1, 9, 36, 3), (1, 66, 40, 1), (1, 5, 96, 1), (1, 1, 768, 12),
                                              (2, 3, 64, 2), (1, 1, 32, 1)])
def test_int8_weights_compute_with_their_dequantized_values(backend, B, T, C, NH):
    rng = np.random.default_rng(11)
    OC = 3 * C + 1
    q, scales = quantize_int8(rand(rng, OC, C))
    check_quantized(backend, (q, scales), dequantize(q, scales), B, T, C, OC, rng)


def check_quantized(backend, weight, values, B, T, C, OC, rng):
    """The matmul and the encoder of `backend` on a quantized weight compute with its
    dequantized `values` (float32, what weight_at reads); the parallel backend's integer
    products (whole blocks) round its inputs to int16 first."""
    kernels = backends.load(backend).kernels
    inp, bias = rand(rng, B, T, C), rand(rng, OC)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    kernels.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    if backend == "parallel" and C % QBLOCK == 0:
        inp = int16_rounded(inp)
    expected = inp.astype(np.float64) @ values.T.astype(np.float64) + bias
    # float32 sums: an error that grows with the terms' absolute sum, not the result's
    magnitude = np.abs(inp).astype(np.float64) @ np.abs(values).T.astype(np.float64)
    assert (np.abs(out - expected) <= 1e-5 * np.abs(expected) + 1e-5 * np.sqrt(C) + 1e-6 * magnitude).all()
    tokens = rng.integers(0, OC, (B, T)).astype(np.int32)
    wpe = rand(rng, T, C)
    enc = np.full((B, T, C), np.nan, dtype=np.float32)
    kernels.encoder_forward(enc, tokens, weight, wpe, B, T, C)
    # fastmath (parallel) may fuse q * scale + wpe into one rounding
    np.testing.assert_allclose(enc, values[tokens] + wpe[:T], rtol=1e-6, atol=1e-6)


def test_the_l2_size_is_read_as_linux_writes_it(tmp_path):
    from gptpy.parallel.kernels import l2_bytes
    for i, (level, size) in enumerate([("1", "48K"), ("1", "32K"), ("2", "2M"), ("3", "32768K")]):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "level").write_text(level + "\n")
        (tmp_path / f"index{i}" / "size").write_text(size + "\n")
    assert l2_bytes(tmp_path) == 2 << 20
    (tmp_path / "index2" / "size").write_text("1024K\n")
    assert l2_bytes(tmp_path) == 1 << 20
    (tmp_path / "index2" / "size").write_text("lots\n")
    assert l2_bytes(tmp_path) == 512 << 10  # unreadable: Zen 3's
    assert l2_bytes(tmp_path / "absent") == 512 << 10


def test_prefill_blocks_are_sized_from_the_l2(monkeypatch):
    """A block's weight rows take at most a quarter of a core's L2 (at most 64 rows, at
    least a tile's 4): on Zen 5's 1 MB, C = 768's float32 rows 64 at a time and fcproj's
    (C = 3072) 20; on Zen 3's 512 KB, 40 and 8."""
    from gptpy.parallel import kernels as parallel_kernels
    assert parallel_kernels.l2_bytes() >= 64 << 10  # this host's, from Linux (or Zen 3's 512 KB)
    monkeypatch.setattr(parallel_kernels, "L2_BYTES", 1 << 20)
    assert [parallel_kernels.block_rows(4 * C) for C in (768, 3072)] == [64, 20]
    assert parallel_kernels.block_rows(2 * 3072) == 40  # bfloat16
    monkeypatch.setattr(parallel_kernels, "L2_BYTES", 512 << 10)
    assert [parallel_kernels.block_rows(4 * C) for C in (768, 3072)] == [40, 8]
    assert parallel_kernels.block_rows(1 << 30) == 4
    assert parallel_kernels._tile_row_bytes(np.zeros((2, 768), np.float32), 768) == 3072
    assert parallel_kernels._tile_row_bytes((np.zeros((2, 384), np.uint8), None), 768) == 3072  # int4: decoded rows
