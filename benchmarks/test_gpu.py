"""The GPU backend (`--backend cuda`) on the 124M shape, against the CPU backend's figures
from the same run; skipped where numba sees no CUDA GPU. Every timed call ends with a
synchronize: kernel launches return before the work is done."""

import numpy as np
import pytest
from numba import cuda

from results import RESULTS
from gptpy import backends
from gptpy.backends import memory_of
from gptpy.model import Activations, gpt2_forward

if not cuda.is_available():
    pytest.skip("no CUDA GPU (numba.cuda.is_available() is False)", allow_module_level=True)


@cuda.jit
def _read(a, partial):
    """Each thread sums a grid-strided share of a; one partial sum per thread."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    total = 0.0
    for j in range(i, a.size, stride):
        total += a[j]
    partial[i] = total


@pytest.fixture(scope="module")
def gpu():
    kernels = backends.load("cuda").kernels
    return kernels, memory_of(kernels)


@pytest.fixture(scope="module")
def device_params(gpu, model_124M):
    return gpu[1].upload(model_124M.params)


def test_gpu_bandwidth(benchmark, gpu):
    """Not a job: the GPU's read bandwidth, for the decode floor."""
    memory = gpu[1]
    a = cuda.to_device(np.ones(1 << 28, dtype=np.float32))  # 1 GiB, past any cache
    blocks, threads = 4 * cuda.get_current_device().MULTIPROCESSOR_COUNT, 1024
    partial = cuda.device_array(blocks * threads, dtype=np.float32)

    def read():
        _read[blocks, threads](a, partial)
        memory.synchronize()

    benchmark.group = "gpu"
    benchmark.pedantic(read, rounds=20, warmup_rounds=2)
    RESULTS["gpu bandwidth"] = a.nbytes / benchmark.stats.stats.median


@pytest.mark.parametrize("context", [16, 512])
def test_gpu_decode(benchmark, record, gpu, device_params, model_124M, context):
    kernels, memory = gpu
    config = model_124M.config
    acts = Activations(config, 1, context + 1, memory.zeros)
    inputs = (np.arange(context + 1, dtype=np.int32) % config.vocab_size).reshape(1, -1)
    gpt2_forward(kernels, device_params, config, acts, inputs, 1, context, 0, True)

    def step():  # what gpt does per token: the forward, then the copy sampling needs
        probs = gpt2_forward(kernels, device_params, config, acts, inputs, 1, context + 1, context, True)
        return memory.to_host(probs[0, -1])

    benchmark.group = "gpu"
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)
    record(f"gpu decode@{context}")


@pytest.mark.parametrize("T", [64, 256, 1024])
def test_gpu_prefill(benchmark, record, gpu, device_params, model_124M, T):
    kernels, memory = gpu
    config = model_124M.config
    T = min(T, config.max_seq_len)
    acts = Activations(config, 1, T, memory.zeros)
    inputs = (np.arange(T, dtype=np.int32) % config.vocab_size).reshape(1, T)

    def prefill():
        gpt2_forward(kernels, device_params, config, acts, inputs, 1, T, 0, True)
        memory.synchronize()

    benchmark.group = "gpu"
    benchmark.pedantic(prefill, rounds=5, warmup_rounds=1)
    record(f"gpu prefill@{T}")
