"""One forward pass of the 124M shape, as gpt.c runs it (all T positions, logits at
each), per backend: at T=1 (the first step of a one-token prompt) and T=9 (gpt.c's
last step). Model load and JIT compilation are excluded: a warm-up round runs first."""

import numpy as np
import pytest

from model import BACKENDS, Activations, gpt2_forward, load_backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 9])
def test_forward(benchmark, model_124M, backend, T):
    config = model_124M.config
    kernels = load_backend(backend)
    acts = Activations(config, 1, T)
    inputs = np.arange(T, dtype=np.int32).reshape(1, T)
    benchmark.group = f"forward T={T}"
    benchmark.extra_info["backend"] = backend
    benchmark.pedantic(gpt2_forward, args=(kernels, model_124M.params, config, acts, inputs, 1, T),
                       rounds=5, iterations=1, warmup_rounds=1)
