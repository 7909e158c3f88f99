"""Checks of the GPU backend that need numba.cuda to run: under the CUDA simulator (run by
test_gpu.py, in a process with NUMBA_ENABLE_CUDASIM=1) or on a machine with a GPU
(`pytest tests/gpu_sim_checks.py`). Tiny models: the simulator runs every CUDA thread as
a Python thread."""

import dataclasses

import numpy as np
import pytest
from numba import cuda

from gptpy import gpu
from gptpy import serial
from gptpy.checkpoint import GPT2Config, load_checkpoint
from conftest import gpt_command, run_cli
from gptpy.backends import memory_of
from gptpy.model import Activations, gpt2_forward

if not cuda.is_available():
    pytest.skip("needs numba.cuda: a GPU, or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

TINY = GPT2Config(max_seq_len=16, vocab_size=61, padded_vocab_size=64, num_layers=2, num_heads=2, channels=20)


def twin_cases(B, T, C, NH, Tq):
    """kernel name -> (number of leading output arguments, arguments), random inputs."""
    rng = np.random.default_rng(0)
    x = lambda *shape: (2 * rng.standard_normal(shape)).astype(np.float32)
    Vp, V, N = 24, 21, B * T * 4 * C
    return {
        "encoder_forward": (1, [x(B, T, C), rng.integers(0, Vp, (B, T)).astype(np.int32), x(Vp, C), x(T + 3, C), B, T, C]),
        "layernorm_forward": (3, [x(B, T, C), x(B, T), x(B, T), x(B, T, C), x(C), x(C), B, T, C]),
        "matmul_forward": (1, [x(B, T, 3 * C), x(B, T, C), x(3 * C, C), x(3 * C), B, T, C, 3 * C]),
        "matmul_forward no bias": (1, [x(B, T, Vp), x(B, T, C), x(Vp, C), None, B, T, C, Vp]),
        "attention_forward": (3, [x(B, Tq, C), x(B, NH, Tq, T), x(B, NH, Tq, T), x(B, T, 3 * C), B, T, C, NH]),
        "gelu_forward": (1, [x(N), x(N), N]),
        "residual_forward": (1, [x(N), x(N), x(N), N]),
        "softmax_forward": (1, [x(B, T, Vp), x(B, T, Vp), B, T, V, Vp]),
    }


@pytest.mark.parametrize("B,T,C,NH,Tq", [(1, 5, 20, 2, 5), (1, 1, 12, 1, 1), (2, 6, 16, 4, 2)])
@pytest.mark.parametrize("case", list(twin_cases(1, 1, 4, 1, 1)))
def test_gpu_kernel_matches_its_serial_twin(case, B, T, C, NH, Tq):
    outputs, args = twin_cases(B, T, C, NH, Tq)[case]
    ours = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    getattr(serial, case.split()[0])(*args)
    getattr(gpu, case.split()[0])(*ours)
    for expected, got in zip(args[:outputs], ours[:outputs]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gpu_forward_on_device_memory_matches_serial(tmp_path):
    """The real path: weights uploaded once, activations on the device, a KV cache."""
    path = tmp_path / "tiny.bin"
    from gptpy import checkpoint, random_model
    checkpoint.write_checkpoint(path, TINY, random_model.random_params(TINY, seed=4), 3)
    ckpt = load_checkpoint(path)
    tokens = np.array([[3, 1, 4, 1, 5]], dtype=np.int32)
    reference = Activations(TINY, 1, 5)
    expected = gpt2_forward(serial, ckpt.params, TINY, reference, tokens, 1, 5)[0, -1]
    memory = memory_of(gpu)
    params, acts = memory.upload(ckpt.params), Activations(TINY, 1, 5, memory.zeros)
    gpt2_forward(gpu, params, TINY, acts, tokens, 1, 3, 0, last_only=True)  # prefill 3
    gpt2_forward(gpu, params, TINY, acts, tokens, 1, 4, 3, last_only=True)  # then one at a time
    probs = gpt2_forward(gpu, params, TINY, acts, tokens, 1, 5, 4, last_only=True)
    np.testing.assert_allclose(memory.to_host(probs[0, -1]), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("prompt", [[5], [1, 2, 3]])
def test_gpu_tokens_match_serial(make_model, prompt):
    path = make_model(dataclasses.replace(TINY, padded_vocab_size=64), seed=1, confident=True)
    serial_run = run_cli(gpt_command(), "--model", path, "--backend", "serial", "-n", 7, *prompt)
    for mode in ([], ["--recompute"]):
        gpu_run = run_cli(gpt_command(), "--model", path, "--backend", "cuda", "-n", 7, *mode, *prompt, timeout=300)
        assert gpu_run.returncode == 0, gpu_run.stderr
        assert gpu_run.stdout == serial_run.stdout and len(gpu_run.stdout.split()) == 7 - len(prompt)
