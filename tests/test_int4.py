"""int4 weights (weights.quantize_int4): the quantization against a numpy formula written
apart from it, the packed layout, and every kernel path that reads them (the serial
reference, prefill's decoded rows in both tile widths, decoding's integer matvec, the
encoder) against the dequantized values. Decoding's matvec is tested beside int8's, for
its rounding bound and its infs (test_kernels.py)."""

import numpy as np
import pytest

from gptpy.checkpoint import bf16_to_float32, float32_to_bf16
from gptpy.dtypes import QBLOCK
from gptpy.weights import quantize_int4
from test_kernels import check_quantized, rand


def int4_reference(w):
    """numpy's (levels, scales) of a float32 (OC, C): per block of QBLOCK values the value
    of largest magnitude m (the first on a tie), d = m / -8 rounded to bfloat16 (nearest,
    ties to even, by frexp), levels = rint(v / d) clipped to [-8, 7]; a partial last
    block is padded with zeros. levels (OC, C) int, scales (OC, blocks) float32."""
    OC, C = w.shape
    nb = -(-C // QBLOCK)
    padded = np.zeros((OC, nb * QBLOCK), np.float32)
    padded[:, :C] = w
    blocks = padded.reshape(OC, nb, QBLOCK)
    m = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)[..., 0]
    mantissa, exponent = np.frexp((m / np.float32(-8)).astype(np.float32).astype(np.float64))
    d = np.ldexp(np.round(mantissa * 256) / 256, exponent).astype(np.float32)
    divisor = np.where(d == 0, np.float32(1), d)
    levels = np.clip(np.rint(blocks / divisor[..., None]), -8, 7).astype(int)
    return levels.reshape(OC, -1)[:, :C], d


def unpack(packed, C):
    """The levels of a packed (OC, 16 blocks) uint8: byte j of a block holds values j and
    j + 16, low nibble first, each plus 8."""
    OC = packed.shape[0]
    blocks = packed.reshape(OC, -1, QBLOCK // 2).astype(int)
    levels = np.concatenate([blocks & 15, blocks >> 4], axis=-1) - 8
    return levels.reshape(OC, -1)[:, :C]


def dequantize4(packed, scales, C):
    return (unpack(packed, C) * np.repeat(bf16_to_float32(scales), QBLOCK, axis=1)[:, :C]).astype(np.float32)


@pytest.mark.parametrize("C", [QBLOCK, 36, 5, 768])  # whole blocks, a partial last block, one partial block
@pytest.mark.parametrize("bits", [False, True])
def test_quantize_int4_is_numpys_q4_0_rounding_in_the_packed_layout(C, bits):
    rng = np.random.default_rng(20)
    w = rand(rng, 40, C) * rng.uniform(1e-3, 1e3, (40, 1)).astype(np.float32)  # rows of every scale
    w[3] = 0  # an all-zero row: scale 0, every level 0 (nibble 8)
    w[7, 0] = 2 * np.abs(w[7]).max()  # an outlier: its block's values lose precision, not the others'
    w[9, 1] = -2 * np.abs(w[9]).max()  # the largest magnitude negative: the scale is positive
    source = float32_to_bf16(w) if bits else w
    exact = bf16_to_float32(source) if bits else w
    packed, scales = quantize_int4(source)
    nb = -(-C // QBLOCK)
    assert packed.dtype == np.uint8 and packed.shape == (40, 16 * nb)
    assert scales.dtype == np.uint16 and scales.shape == (40, nb)
    levels, d = int4_reference(exact)
    np.testing.assert_array_equal(unpack(packed, C), levels)
    np.testing.assert_array_equal(bf16_to_float32(scales), d)
    assert (packed[3] == 0x88).all() and (bf16_to_float32(scales[3]) == 0).all()
    assert unpack(packed, C)[7, 0] == -8 and unpack(packed, C)[9, 1] == -8  # the largest is -8 d exactly
    if C % QBLOCK:  # the padding is level 0
        assert (packed.reshape(40, nb, 16)[:, -1, C % QBLOCK:16] & 15 == 8).all()
    # the error: half a step, and where the levels stop (at 7, or at -8 past a scale
    # rounded down by up to 2^-8) one step and 8 x 2^-8
    error = np.abs(dequantize4(packed, scales, C) - exact)
    step = np.abs(np.repeat(d, QBLOCK, axis=1)[:, :C])
    assert (error <= step * (1 + 8 / 256 + 1e-4)).all() and (error[np.abs(levels) < 7] <= step[np.abs(levels) < 7] * 0.5001).all()
    stacked, stacked_scales = quantize_int4(np.stack([source, source]))  # (L, OC, C) as a layer stack
    assert stacked.shape == (2, 40, 16 * nb) and stacked_scales.shape == (2, 40, nb)
    np.testing.assert_array_equal(stacked[1], packed)


def test_quantize_int4_goes_by_chunks_of_rows_and_says_each(monkeypatch):
    from gptpy import weights
    rng = np.random.default_rng(12)
    w = rand(rng, 3, 50, 40)
    whole = quantize_int4(w)
    monkeypatch.setattr(weights, "CHUNK_BYTES", 160 * 16)  # 16 rows a chunk
    told = []
    packed, scales = quantize_int4(w, lambda lo, hi: told.append((lo, hi)))
    assert told == [(lo, min(lo + 16, 150)) for lo in range(0, 150, 16)]
    np.testing.assert_array_equal(packed, whole[0])
    np.testing.assert_array_equal(scales, whole[1])


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("B,T,C", [(1, 1, 20), (1, 7, 36), (2, 5, 12), (1, 9, 36), (1, 66, 40), (1, 5, 96),
                                   (1, 1, 768), (2, 3, 64), (1, 1, 32), (1, 70, 3072)])
def test_int4_weights_compute_with_their_dequantized_values(backend, B, T, C):
    """The matmul (prefill, decoding) and the encoder; the parallel integer products
    (whole blocks) round their inputs to int16 first, as for int8."""
    rng = np.random.default_rng(C + T)
    OC = 3 * C + 1 if C < 1000 else 130
    packed, scales = quantize_int4(rand(rng, OC, C))
    check_quantized(backend, (packed, scales), dequantize4(packed, scales, C), B, T, C, OC, rng)


@pytest.mark.parametrize("rows", [4, 20, 64])  # a block: parallel.kernels.block_rows
@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("B,T,C,OC", [(1, 4, 20, 7), (1, 9, 36, 131), (2, 66, 40, 250), (1, 17, 64, 130),
                                    (1, 7, 36, 131)])
def test_both_prefill_tiles_read_int4_rows_decoded(rows, channels, B, T, C, OC):
    from gptpy.parallel.kernels import _matmul_forward
    rng = np.random.default_rng(channels + OC)
    packed, scales = quantize_int4(rand(rng, OC, C))
    inp, bias = rand(rng, B, T, C), rand(rng, OC)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    _matmul_forward(out, inp, (packed, scales), bias, B, T, C, OC, 2, rows, channels)
    expected = inp.astype(np.float64) @ dequantize4(packed, scales, C).T.astype(np.float64) + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(C))


@pytest.mark.parametrize("C", [QBLOCK, 36, 5, 768])
def test_an_int4_row_decodes_to_exactly_its_dequantized_values(C):
    """weights.decode_int4_row (LLVM IR), which prefill's float32 tiles and AMX's int4
    rows read: every value exactly numpy's level x scale, a partial last block's padding
    as zeros, and nothing past the row's blocks written."""
    from numba import njit
    from gptpy.weights import decode_int4_row

    @njit
    def decode(out, packed, scales):
        for o in range(out.shape[0]):
            decode_int4_row(out[o, :-1], packed, scales, o)

    rng = np.random.default_rng(C)
    w = rand(rng, 9, C) * rng.uniform(1e-3, 1e3, (9, 1)).astype(np.float32)
    packed, scales = quantize_int4(w)
    nb = scales.shape[1]
    out = np.full((9, nb * QBLOCK + 1), np.nan, np.float32)
    decode(out, packed, scales)
    assert np.array_equal(out[:, :C], dequantize4(packed, scales, C))
    assert not out[:, C:-1].any() and np.isnan(out[:, -1]).all()


@pytest.mark.parametrize("C", [32, 64, 96, 160])  # blocks: 1, 2, 3, 5 (an odd last one pairs with zeros)
def test_decodings_int4_activations_are_laid_out_as_the_nibbles_unpack(C):
    """weights.round_activations for int4: per pair of blocks, values 0-15 of each, then
    16-31 of each, then 16 int32 corrections with -8 x each block's sum in lanes 0 and 8;
    int8's are the rounded values in order."""
    from gptpy.weights import activations_int16_size, quantize_int8, round_activations
    rng = np.random.default_rng(C)
    x = rand(rng, C, scale=3.0)
    scale = np.float32(np.abs(x).max() / 32767)
    rounded = np.rint(x / scale).astype(np.int16)
    pairs = (C // QBLOCK + 1) // 2
    blocks = np.zeros((2 * pairs, QBLOCK), np.int16)
    blocks[:C // QBLOCK] = rounded.reshape(-1, QBLOCK)
    xq = np.full(activations_int16_size(C), 12345, np.int16)
    round_activations(xq, x, scale, quantize_int4(rand(rng, 1, C))[0])
    for g in range(pairs):
        first, second = blocks[2 * g], blocks[2 * g + 1]
        pair = xq[96 * g:96 * (g + 1)]
        np.testing.assert_array_equal(pair[:64], np.concatenate([first[:16], second[:16], first[16:], second[16:]]))
        corrections = np.zeros(16, np.int32)
        corrections[0], corrections[8] = -8 * first.astype(np.int32).sum(), -8 * second.astype(np.int32).sum()
        np.testing.assert_array_equal(pair[64:].view(np.int32), corrections)
    xq8 = np.zeros(activations_int16_size(C), np.int16)
    round_activations(xq8, x, scale, quantize_int8(rand(rng, 1, C))[0])
    np.testing.assert_array_equal(xq8[:C], rounded)
