"""The KV cache in bfloat16 (--kv-dtype bf16): the matmul rounds its results into it once,
attention widens them as it reads, on every path (prefill's tiles, decoding's dot products
and integer matvecs, attention by keys and by queries); whole forwards against numpy with
the same rounding; and the commands that take it."""

import numpy as np
import pytest

from gptpy import backends
from gptpy.checkpoint import bf16_to_float32, float32_to_bf16, load_checkpoint
from gptpy.model import Activations, gpt2_forward
from gptpy.weights import quantize_int4, quantize_int8
from conftest import SMALL, one_error_line
from reference import gpt2_logits
from test_forward import bf16_round_reference
from test_kernels import rand


def weight_of(dtype, w):
    return {"fp32": w, "bf16": float32_to_bf16(w), "int8": quantize_int8(w), "int4": quantize_int4(w)}[dtype]


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
@pytest.mark.parametrize("B,T,C,OC", [(1, 1, 64, 192), (1, 3, 36, 108), (2, 9, 64, 130), (1, 70, 40, 250)])
def test_the_matmul_rounds_each_result_once_into_a_bf16_cache(backend, dtype, B, T, C, OC):
    """Into a uint16 output, the float32 output's values, each rounded to bfloat16 as the
    checkpoint rounds (nearest, ties to even): the same arithmetic, one more rounding."""
    kernels = backends.load(backend).kernels
    rng = np.random.default_rng(T + OC)
    weight, inp, bias = weight_of(dtype, rand(rng, OC, C)), rand(rng, B, T, C), rand(rng, OC)
    wide = np.full((B, T, OC), np.nan, np.float32)
    kernels.matmul_forward(wide, inp, weight, bias, B, T, C, OC)
    narrow = np.zeros((B, T, OC), np.uint16)
    kernels.matmul_forward(narrow, inp, weight, bias, B, T, C, OC)
    np.testing.assert_array_equal(narrow, float32_to_bf16(wide))
    inp[0, -1, 3] = np.nan  # a NaN stays a NaN (the rounding's carry would make some an inf)
    kernels.matmul_forward(narrow, inp, weight, bias, B, T, C, OC)
    assert np.isnan(bf16_to_float32(narrow[0, -1])).all()


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("B,T,Tq,C,NH", [(1, 9, 1, 36, 3), (1, 40, 1, 64, 4), (2, 23, 23, 36, 3), (1, 30, 18, 12, 4),
                                         (1, 7, 7, 20, 1)])
def test_attention_reads_a_bf16_cache_as_its_widened_values(backend, B, T, Tq, C, NH):
    """Decoding (Tq = 1), prefill (by keys and by queries past 16 queries), a continued
    prefill: what the float32 kernel computes from the widened values, exactly."""
    kernels = backends.load(backend).kernels
    rng = np.random.default_rng(T * NH)
    bits = float32_to_bf16(rand(rng, B, T, 3 * C, scale=2.0))
    outs = []
    for inp in (bits, bf16_to_float32(bits)):
        out = np.full((B, Tq, C), np.nan, np.float32)
        preatt, att = np.zeros((B, NH, Tq, T), np.float32), np.zeros((B, NH, Tq, T), np.float32)
        kernels.attention_forward(out, preatt, att, inp, B, T, C, NH)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.isfinite(outs[0]).all()


@pytest.mark.parametrize("backend", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_a_forward_with_a_bf16_cache_is_numpys_with_q_k_v_rounded(backend, dtype, off_grid_model):
    """The logits against numpy's forward whose q, k and v are rounded to bfloat16 where
    the matmul leaves them (float32 weights; int8's moves them further); far from numpy's
    unrounded forward."""
    from test_forward import int8_reference
    from gptpy.checkpoint import MATMUL_WEIGHTS
    path, params = off_grid_model
    tokens = np.array([5, 100, 0, 42, 42, 3, 99, 1, 64])
    held = {name: int8_reference(x) if dtype == "int8" and name in MATMUL_WEIGHTS else x for name, x in params.items()}
    expected = gpt2_logits(held, SMALL, tokens, kv_as_held=lambda qkv: bf16_round_reference(qkv.astype(np.float32)))
    ckpt = load_checkpoint(path, dtype)
    acts = Activations(SMALL, 1, len(tokens), kv_dtype="bf16")
    assert acts.qkv.dtype == np.uint16
    gpt2_forward(backends.load(backend).kernels, ckpt.params, SMALL, acts, tokens[None].astype(np.int32), 1, len(tokens))
    logits = acts.shaped(1, len(tokens), len(tokens))["logits"][0, :, :SMALL.vocab_size]
    error = np.abs(logits - expected).max()
    assert error < 2e-3
    assert np.abs(gpt2_logits(held, SMALL, tokens) - expected).max() > 10 * error  # the rounding did happen


@pytest.fixture(scope="module")
def off_grid_model(tmp_path_factory):
    from test_forward import off_grid_model as make
    return make.__wrapped__(tmp_path_factory)


def tokens_of(result):
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
def test_serial_and_parallel_print_the_same_tokens_with_a_bf16_cache(gpt, make_model, dtype):
    """Every pool size, the cache and recompute, against the serial reference; --kv-dtype
    bf16 is the default for all but fp32, which keeps gpt.c's float32 cache."""
    model = make_model(seed=2, confident=True)
    prompt = ["5", "100", "0", "42"]
    expected = tokens_of(gpt("--model", model, "--backend", "serial", "--dtype", dtype, "--kv-dtype", "bf16", *prompt))
    for K in (1, 2, 3):
        for mode in ([], ["--recompute"]):
            assert tokens_of(gpt("--model", model, "--dtype", dtype, "--kv-dtype", "bf16", "--threads", K, *mode,
                                 *prompt)) == expected, (K, mode)
    default = tokens_of(gpt("--model", model, "--dtype", dtype, *prompt))
    other = "fp32" if dtype != "fp32" else "bf16"
    assert default == tokens_of(gpt("--model", model, "--dtype", dtype, "--kv-dtype", "fp32" if dtype == "fp32"
                                    else "bf16", *prompt))
    assert tokens_of(gpt("--model", model, "--dtype", dtype, "--kv-dtype", other, *prompt))  # runs


@pytest.mark.parametrize("options,message", [
    (["--kv-dtype", "fp16"], "invalid choice: 'fp16'"),
    (["--kv-dtype", ""], "invalid choice: ''"),
    (["--backend", "cuda", "--kv-dtype", "bf16"], "--kv-dtype bf16 is not available with --backend cuda"),
])
def test_bad_kv_dtypes_get_one_line_and_exit_2(gpt, make_model, options, message):
    assert message in one_error_line(gpt("--model", make_model(), *options, "1", "2"), 2)


def test_gpt_perplexity_measures_the_bf16_cache_against_fp32(make_model, tmp_path):
    from test_perplexity import perplexity_cli, values
    model = make_model(lively=True)
    ids = np.random.default_rng(0).integers(0, SMALL.vocab_size, 100).tolist()
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)))
    done = perplexity_cli("--model", model, "--ids", tmp_path / "ids.txt", "--kv-dtype", "bf16", "--against", "fp32")
    assert done.returncode == 0, done.stderr
    assert "fp32 weights, bf16 KV cache" in done.stderr
    printed = values(done.stdout)
    assert 0 < printed["kl_divergence_mean"] < 1e-3 and printed["top1_agreement"] > 0.9
    same = perplexity_cli("--model", model, "--ids", tmp_path / "ids.txt", "--kv-dtype", "fp32", "--against", "fp32")
    assert "--against fp32 is the precision measured" in one_error_line(same, 2)
