"""The whole forward pass of each backend against the independent numpy GPT-2."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptpy.checkpoint import load_checkpoint
from conftest import SMALL
from gptpy import backends
from gptpy.model import Activations, gpt2_forward
from reference import gpt2_logits, softmax
from gptpy.dtypes import QBLOCK
from test_kernels import dequantize, quantize_reference

BACKENDS = backends.available()  # cuda where a GPU or numba's simulator is


def forward_logits(backend, path, tokens, max_T=None):
    """gpt.c's forward: all positions, logits at each -> (checkpoint, logits (T,Vp), probs (T,Vp))"""
    ckpt = load_checkpoint(path)
    T = len(tokens)
    acts = Activations(ckpt.config, 1, max_T or T)
    inputs = np.array([tokens], dtype=np.int32)
    probs = gpt2_forward(backends.load(backend).kernels, ckpt.params, ckpt.config, acts, inputs, 1, T)
    return ckpt, acts.shaped(1, T, T)["logits"][0], probs[0]


def cached_last_logits(backend, path, tokens, prefill):
    """The prompt's first `prefill` tokens in one pass, then one position at a time
    against the KV cache, logits at the last position only -> logits of each step (Vp,)"""
    ckpt = load_checkpoint(path)
    acts = Activations(ckpt.config, 1, len(tokens))
    inputs = np.array([tokens], dtype=np.int32)
    steps, cached = [], 0
    for T in range(prefill, len(tokens) + 1):
        gpt2_forward(backends.load(backend).kernels, ckpt.params, ckpt.config, acts, inputs, 1, T, cached, last_only=True)
        steps.append(acts.shaped(1, T - cached, T)["logits"][0, 0].copy())
        cached = T
    return steps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", [1, 3, 5])
@pytest.mark.parametrize("tokens", [[7], [5, 100, 0, 42, 42, 3, 99, 1, 64]])
def test_logits_match_numpy(backend, version, tokens, make_model):
    # confident and lively: logits ~20, attention and GELU off their flat and linear
    # ranges, so that a small error in any kernel exceeds the tolerance
    path = make_model(version=version, confident=True, lively=True)
    ckpt, logits, probs = forward_logits(backend, path, tokens)  # version 5: the bf16 kernels
    V = ckpt.config.vocab_size
    expected = gpt2_logits(load_checkpoint(path, "fp32").params, ckpt.config, np.array(tokens))  # (T, V)
    # float32 sums of at most 4C terms of order 1: errors near 1e-6, 1e-4 has margin
    np.testing.assert_allclose(logits[-1, :V], expected[-1], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits[:, :V], expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(probs[-1, :V], softmax(expected[-1]), rtol=0, atol=1e-4)


def test_versions_1_3_5_of_one_model_give_the_same_logits(make_model):
    tokens = [3, 1, 4, 1, 5]
    results = [forward_logits("serial", make_model(version=v), tokens) for v in (1, 3, 5)]
    V = SMALL.vocab_size
    # the generator rounds to bfloat16, so all three files hold the same numbers
    for _, logits, _ in results[1:]:
        np.testing.assert_array_equal(logits[:, :V], results[0][1][:, :V])


def test_buffers_sized_for_more_positions_give_the_same_result(make_model):
    """gpt reuses buffers allocated for n-1 positions at every step."""
    tokens = [9, 8, 7]
    for backend in BACKENDS:
        _, exact, _ = forward_logits(backend, make_model(), tokens)
        _, roomy, _ = forward_logits(backend, make_model(), tokens, max_T=SMALL.max_seq_len)
        np.testing.assert_array_equal(exact, roomy)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prefill", [1, 4])
def test_kv_cache_gives_the_logits_of_recomputing(backend, make_model, prefill):
    tokens = [5, 100, 0, 42, 42, 3, 99, 1, 64]
    steps = cached_last_logits(backend, make_model(), tokens, prefill)
    for T, cached in zip(range(prefill, len(tokens) + 1), steps):
        _, full, _ = forward_logits(backend, make_model(), tokens[:T])
        if backend == "serial":  # the same additions in the same order: bit for bit
            np.testing.assert_array_equal(cached, full[-1])
        else:  # fastmath: a position may land in another matmul tile than before
            np.testing.assert_allclose(cached, full[-1], rtol=0, atol=1e-5)


class RecordingKernels:
    """A backend's kernels that also record each call: (name, its arguments)."""

    def __init__(self, kernels):
        self.kernels, self.calls = kernels, []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, args))
            return getattr(self.kernels, name)(*args)
        return record


@pytest.mark.parametrize("last_only", [True, False])
def test_a_prefill_runs_the_last_layer_past_its_keys_for_the_last_position_only(make_model, last_only):
    """With logits at the last position only, the last layer's q, k and v are computed
    for every position (the cache keeps them) and the rest of it for the last position
    alone; with every position's logits (gpt.c's forward), every matmul sees all T."""
    ckpt = load_checkpoint(make_model())
    L, T = ckpt.config.num_layers, 6
    kernels = RecordingKernels(backends.load("serial").kernels)
    inputs = np.array([[5, 100, 0, 42, 42, 3]], dtype=np.int32)
    gpt2_forward(kernels, ckpt.params, ckpt.config, Activations(ckpt.config, 1, T), inputs, 1, T, last_only=last_only)
    positions = [args[5] for name, args in kernels.calls if name == "matmul_forward"]  # (out, inp, w, b, B, T, ...)
    queries = [args[0].shape[1] for name, args in kernels.calls if name == "attention_forward"]  # out (B,Tq,C)
    if last_only:
        assert positions == [T] * 4 * (L - 1) + [T, 1, 1, 1] + [1]  # the LM head: the last position
        assert queries == [T] * (L - 1) + [1]
    else:
        assert positions == [T] * (4 * L + 1) and queries == [T] * L


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("version", [3, 5])
def test_parallel_matches_serial_for_every_pool_size(make_model, threads, version):
    """In a fresh interpreter whose pool has exactly `threads` workers (numba sizes it once,
    at import, from NUMBA_NUM_THREADS): on a one-core machine too, 2 means 2."""
    tokens = [5, 100, 0, 42, 42, 3, 99, 1, 64, 7, 7]
    path = make_model(version=version)
    _, reference, _ = forward_logits("serial", path, tokens)
    code = ("import sys, numba, numpy as np; from test_forward import forward_logits; "
            f"assert numba.get_num_threads() == {threads}; "
            f"np.save(sys.stdout.buffer, forward_logits('parallel', {str(path)!r}, {tokens})[1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=Path(__file__).parent,
                          env={**os.environ, "NUMBA_NUM_THREADS": str(threads)}, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    np.testing.assert_allclose(np.load(io.BytesIO(done.stdout)), reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("length", range(1, 10))
def test_every_prompt_length_gives_the_same_tokens_everywhere(make_model, length):
    """serial (gpt.c's recompute) = parallel with the KV cache = parallel recomputing."""
    from gptpy.model import generate
    ckpt = load_checkpoint(make_model(seed=2, confident=True))
    prompt = [(7 * i + 3) % SMALL.vocab_size for i in range(length)]
    reference = list(generate(backends.load("serial").kernels, ckpt, prompt, 10, recompute=True))
    assert len(reference) == 10 - length
    for recompute in (False, True):
        assert list(generate(backends.load("parallel").kernels, ckpt, prompt, 10, recompute)) == reference


# bf16, int8 and int4 weights on values off the bfloat16 grid (real weights are): the logits
# against numpy's forward on the weights as each dtype holds them, rounded or quantized
# by numpy formulas written apart from the loader's

def bf16_round_reference(x):
    """float32 -> the nearest bfloat16 value (ties to even), by frexp: 8 significant bits."""
    mantissa, exponent = np.frexp(np.asarray(x, np.float64))
    return np.ldexp(np.round(mantissa * 256) / 256, exponent).astype(np.float32)


def int8_reference(w):
    """A weight (..., OC, C) as its int8 blocks dequantize: numpy's absmax / 127 per 32."""
    rows = w.reshape(-1, w.shape[-1])
    q, scales = quantize_reference(rows)
    return dequantize(q, scales).reshape(w.shape)


def int4_dequantized(w):
    """A weight (..., OC, C) as its int4 blocks dequantize (test_int4.int4_reference)."""
    from test_int4 import int4_reference
    levels, d = int4_reference(w.reshape(-1, w.shape[-1]))
    return (levels * np.repeat(d, QBLOCK, axis=1)[:, :w.shape[-1]]).astype(np.float32).reshape(w.shape)


@pytest.fixture(scope="module")
def off_grid_model(tmp_path_factory):
    """A confident, lively SMALL model whose matmul weights are off the bfloat16 grid."""
    from gptpy import random_model
    from gptpy.checkpoint import MATMUL_WEIGHTS, write_checkpoint
    params = random_model.random_params(SMALL, seed=3, confident=True)
    params["qkvw"] *= 8
    params["fcw"] *= 32
    rng = np.random.default_rng(0)
    for name in MATMUL_WEIGHTS:
        params[name] = (params[name] * (1 + 1e-2 * rng.uniform(-1, 1, params[name].shape))).astype(np.float32)
    path = tmp_path_factory.mktemp("offgrid") / "model.bin"
    write_checkpoint(path, SMALL, params, 3)
    return path, params


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_quantized_logits_match_numpy_off_the_bf16_grid(backend, dtype, off_grid_model):
    from gptpy.checkpoint import MATMUL_WEIGHTS
    path, params = off_grid_model
    tokens = np.array([5, 100, 0, 42, 42, 3, 99, 1, 64])
    reference = {"bf16": bf16_round_reference, "int8": int8_reference, "int4": int4_dequantized}[dtype]
    as_held = {name: reference(x) if name in MATMUL_WEIGHTS else x for name, x in params.items()}
    expected = gpt2_logits(as_held, SMALL, tokens)
    ckpt = load_checkpoint(path, dtype)
    acts = Activations(SMALL, 1, len(tokens))
    gpt2_forward(backends.load(backend).kernels, ckpt.params, SMALL, acts, tokens[None].astype(np.int32), 1, len(tokens))
    logits = acts.shaped(1, len(tokens), len(tokens))["logits"][0, :, :SMALL.vocab_size]
    np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-4)
    # the check can fail: float32 weights as they are land far outside that tolerance
    assert np.abs(gpt2_logits(params, SMALL, tokens) - expected).max() > 1e-2
