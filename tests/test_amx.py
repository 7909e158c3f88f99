"""Prefill's matmul on Intel AMX's tiles (parallel/amx.py, parallel.kernels._matmul_amx):
the product within the rounding of its inputs' two bfloat16 parts, for every weight type
it takes and pool size, where the host has AMX; and, on any host, the split itself and
when the tiles are not used."""

import os
import subprocess
import sys

import numpy as np
import pytest

from gptpy.checkpoint import bf16_to_float32, float32_to_bf16
from gptpy.parallel import amx
from gptpy.parallel import kernels as parallel
from gptpy.serial import kernels as serial
from gptpy.weights import quantize_int4, quantize_int8

needs_amx = pytest.mark.skipif(not amx.AVAILABLE, reason="this CPU has no AMX (or numba compiles for one without)")


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def weight_of(dtype, w):
    return {"bf16": float32_to_bf16, "int8": quantize_int8, "int4": quantize_int4}[dtype](w)


def values_of(weight, C, OC):
    """The weight's values as the serial kernels read them (a product with the identity)."""
    dense = np.empty((1, C, OC), np.float32)
    serial.matmul_forward(dense, np.eye(C, dtype=np.float32)[None], weight, None, 1, C, C, OC)
    return dense[0].T


@needs_amx
@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("B,T,C,OC", [(1, 32, 32, 16), (2, 33, 64, 80), (1, 47, 96, 208), (2, 64, 768, 48)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_amx_tiles_give_the_product(dtype, workers, B, T, C, OC, with_bias):
    """Positions past the last whole 16, workers with one group of 16 rows, with none
    (16 rows for 3 workers), with a last chunk of fewer than AMX_GROUPS groups; each
    output within 2^-14 of its products' absolute sum of the float64 product (each input
    and each int8 value carried to 2^-16 by its two bfloat16s), int4's within 2^-8 (its
    values rounded to one bfloat16, to 2^-9)."""
    rng = np.random.default_rng(T + OC)
    weight = weight_of(dtype, rand(rng, OC, C))
    values = values_of(weight, C, OC).astype(np.float64)
    inp, bias = rand(rng, B, T, C), (rand(rng, OC) if with_bias else None)
    assert parallel._amx_takes(weight, T, C, OC)
    high, low = parallel.amx_inputs(B, T, C)
    assert parallel._split_bf16(high, low, inp, B, T, C, workers)
    out = np.full((B, T, OC), np.nan, np.float32)
    parallel._matmul_amx(out, high, low, weight, bias, B, T, C, OC, workers, parallel.AMX_CONFIG)
    expected = inp.astype(np.float64) @ values.T + (bias if with_bias else 0.0)
    bound = 2.0 ** (-8 if dtype == "int4" else -14) * (np.abs(inp).astype(np.float64) @ np.abs(values).T) + 1e-6
    assert np.all(np.abs(out - expected) <= bound), np.max(np.abs(out - expected) / bound)


@needs_amx
@pytest.mark.parametrize("kv", ["fp32", "bf16"])
def test_matmul_forward_takes_the_tiles_into_either_cache(kv):
    """The parallel backend's matmul_forward on an AMX host: the tiles (bfloat16 weights,
    5 positions), their sums stored as the output's type holds them (the KV cache in
    bfloat16 bits), as the serial kernel's to the rounding."""
    rng = np.random.default_rng(3)
    B, T, C, OC = 1, 5, 64, 48
    weight, inp, bias = float32_to_bf16(rand(rng, OC, C)), rand(rng, B, T, C), rand(rng, OC)
    assert parallel._amx_takes(weight, T, C, OC)
    dtype = np.float32 if kv == "fp32" else np.uint16
    out, expected = np.zeros((B, T, OC), dtype), np.zeros((B, T, OC), dtype)
    parallel.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    serial.matmul_forward(expected, inp, weight, bias, B, T, C, OC)
    widen = (lambda a: a) if kv == "fp32" else bf16_to_float32
    np.testing.assert_allclose(widen(out), widen(expected), rtol=1e-2 if kv == "bf16" else 1e-5, atol=1e-4)


@needs_amx
@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_inputs_with_an_inf_or_a_nan_take_the_float32_path(dtype):
    """A NaN or an inf in prefill's inputs: no tiles (the split would turn an inf into a
    NaN); the outputs are the serial kernel's, NaN and inf where its are."""
    rng = np.random.default_rng(4)
    B, T, C, OC = 1, 40, 64, 32
    weight, inp, bias = weight_of(dtype, rand(rng, OC, C)), rand(rng, B, T, C), rand(rng, OC)
    inp[0, 3, 5], inp[0, 20, 7] = np.nan, np.inf
    high, low = parallel.amx_inputs(B, T, C)
    assert not parallel._split_bf16(high, low, inp, B, T, C, 2)
    out, expected = np.zeros((B, T, OC), np.float32), np.zeros((B, T, OC), np.float32)
    parallel.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    serial.matmul_forward(expected, inp, weight, bias, B, T, C, OC)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 7.5e3, 1e30])
def test_the_split_carries_a_value_to_2_to_the_minus_16(scale):
    """_split on any host: high + low within 2^-16 of each value, high the value's top
    16 bits, both bfloat16 bits that widen to floats."""
    rng = np.random.default_rng(5)
    x = rand(rng, 1, 3, 96) * np.float32(scale)
    x[0, 0, :4] = [0.0, -0.0, 1.0, -3.0]
    high, low = parallel.amx_inputs(1, 3, 96)
    assert parallel._split_bf16(high, low, x, 1, 3, 96, 2)
    # back to (position, channel): [b, tg, kb, k, 2 p + j] holds position 16 tg + p, channel 32 kb + 2 k + j
    def positions(parts):
        pairs = parts.reshape(1, 1, 3, 16, 16, 2)[0, 0, :, :, :3, :]  # kb, k, p, j
        return bf16_to_float32(np.ascontiguousarray(pairs.transpose(2, 0, 1, 3).reshape(3, 96)))
    h, lo = positions(high), positions(low)
    assert np.array_equal(float32_to_bf16(h), (x[0].view(np.uint32) >> 16).astype(np.uint16))
    assert np.all(np.abs((h.astype(np.float64) + lo) - x[0]) <= 2.0 ** -16 * np.abs(x[0]))
    assert not np.any(high.reshape(3, 16, 16, 2)[:, :, 3:]), "the positions past T are zeros"


def test_the_tile_config_is_palette_1_of_eight_16_by_64_byte_tiles():
    config = amx.tile_config()
    assert config.shape == (64,) and config[0] == 1 and not config[1:16].any()
    assert list(config[16:32].view(np.uint16)) == [64] * 8 and list(config[48:56]) == [16] * 8
    assert not config[32:48].any() and not config[56:].any()


def test_no_tiles_for_float32_few_positions_or_partial_tiles(monkeypatch):
    """On any host (AVAILABLE made true): float32 weights never (the exact type),
    bfloat16 from 4 positions, int8 and int4 from 32, and only whole tiles of channels
    and rows."""
    monkeypatch.setattr(amx, "AVAILABLE", True)
    rng = np.random.default_rng(6)
    w = rand(rng, 48, 64)
    takes = parallel._amx_takes
    assert not takes(w, 512, 64, 48)
    assert takes(float32_to_bf16(w), 4, 64, 48) and not takes(float32_to_bf16(w), 3, 64, 48)
    for weight in (quantize_int8(w), quantize_int4(w)):
        assert takes(weight, 32, 64, 48) and not takes(weight, 31, 64, 48)
    assert not takes(float32_to_bf16(rand(rng, 40, 64)), 64, 64, 40)  # 40 rows: not whole tiles of 16
    assert not takes(float32_to_bf16(rand(rng, 48, 48)), 64, 48, 48)  # 48 channels: not whole 32s
    monkeypatch.setattr(amx, "AVAILABLE", False)
    assert not takes(float32_to_bf16(w), 64, 64, 48)


def test_no_amx_where_numba_compiles_for_another_cpu():
    """With NUMBA_CPU_NAME=haswell and no features (the AVX2 path on any host), the AMX
    instructions could not be compiled: AVAILABLE is false whatever the host."""
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    code = "from gptpy.parallel import amx; print(amx.AVAILABLE)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "False\n", result.stderr
