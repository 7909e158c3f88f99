"""Each kernel, serial against parallel, on the 124M shapes at T=64 positions, and one
whole gpt.c-style forward (all positions, logits at each) at T=1 and T=9."""

import numpy as np
import pytest

from gptpy import backends
from gptpy.model import Activations, gpt2_forward

T = 64
# a backend this machine cannot run is skipped, with the reason, not failed
ON_THIS_MACHINE = [pytest.param(name, marks=pytest.mark.skipif(name not in backends.available(),
                                                                reason=f"no {name} device on this machine"))
                   for name in backends.NAMES]


def kernel_cases(params, config):
    """name -> (kernel, args) at T positions, with the real weights of layer 0."""
    C, NH, V, Vp = config.channels, config.num_heads, config.vocab_size, config.padded_vocab_size
    rng = np.random.default_rng(0)
    x = lambda *shape: rng.standard_normal(shape, dtype=np.float32)
    p = params
    return {
        "encoder_forward": ("encoder_forward", (x(1, T, C), np.arange(T, dtype=np.int32).reshape(1, T), p["wte"], p["wpe"], 1, T, C)),
        "layernorm_forward": ("layernorm_forward", (x(1, T, C), x(1, T), x(1, T), x(1, T, C), p["ln1w"][0], p["ln1b"][0], 1, T, C)),
        "matmul_forward qkv": ("matmul_forward", (x(1, T, 3 * C), x(1, T, C), p["qkvw"][0], p["qkvb"][0], 1, T, C, 3 * C)),
        "matmul_forward fcproj": ("matmul_forward", (x(1, T, C), x(1, T, 4 * C), p["fcprojw"][0], p["fcprojb"][0], 1, T, 4 * C, C)),
        "matmul_forward lm head": ("matmul_forward", (x(1, T, Vp), x(1, T, C), p["wte"], None, 1, T, C, Vp)),
        "attention_forward": ("attention_forward", (x(1, T, C), x(1, NH, T, T), x(1, NH, T, T), x(1, T, 3 * C), 1, T, C, NH)),
        "gelu_forward": ("gelu_forward", (x(T * 4 * C), x(T * 4 * C), T * 4 * C)),
        "residual_forward": ("residual_forward", (x(T * C), x(T * C), x(T * C), T * C)),
        "softmax_forward": ("softmax_forward", (x(1, T, Vp), x(1, T, Vp), 1, T, V, Vp)),
    }


CASES = ["encoder_forward", "layernorm_forward", "matmul_forward qkv", "matmul_forward fcproj",
         "matmul_forward lm head", "attention_forward", "gelu_forward", "residual_forward", "softmax_forward"]


@pytest.mark.parametrize("backend", ON_THIS_MACHINE)
@pytest.mark.parametrize("case", CASES)
def test_kernel(benchmark, record, model_124M, backend, case):
    name, args = kernel_cases(model_124M.params, model_124M.config)[case]
    kernel = getattr(backends.load(backend).kernels, name)
    benchmark.group = f"kernel T={T}: {case}"
    slow = backend == "serial" and "matmul" in case
    benchmark.pedantic(kernel, args=args, rounds=2 if slow else 10, warmup_rounds=1)
    record(f"{case} {backend}")


@pytest.mark.parametrize("backend", ON_THIS_MACHINE)
@pytest.mark.parametrize("T", [1, 9])
def test_forward(benchmark, model_124M, backend, T):
    config = model_124M.config
    kernels = backends.load(backend).kernels
    acts = Activations(config, 1, T)
    inputs = np.arange(T, dtype=np.int32).reshape(1, T)
    benchmark.group = f"forward T={T}, all logits (gpt.c's step)"
    benchmark.pedantic(gpt2_forward, args=(kernels, model_124M.params, config, acts, inputs, 1, T),
                       rounds=5, warmup_rounds=1)
