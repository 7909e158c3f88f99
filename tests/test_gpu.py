"""The GPU backend where this machine has no GPU: its one-line refusal, and its checks run
under numba's CUDA simulator in a process of their own (numba reads NUMBA_ENABLE_CUDASIM
once, at import, and this process has imported it without)."""

import os
import subprocess
import sys

import pytest
from numba import cuda

from conftest import ROOT


def test_cuda_without_a_gpu_is_one_line(gpt, make_model):
    if cuda.is_available():
        pytest.skip("this machine has a GPU (or the simulator is on): there is nothing to refuse")
    result = gpt("--model", make_model(), "--backend", "cuda", "1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "gpt: error: no CUDA GPU found; use --backend parallel\n"


def test_gpu_backend_under_the_simulator():
    """Every GPU kernel against numpy (test_kernels.py's cuda cases) and against its serial
    twin, the forward pass on device memory with a KV cache, and `gpt --backend cuda`'s
    tokens against serial's (tests/gpu_sim_checks.py)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               "tests/gpu_sim_checks.py", "tests/test_kernels.py", "-k", "cuda or gpu"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 40, summary  # all of them ran: 24 twins + 3 + ~25 kernel cases
