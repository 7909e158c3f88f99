"""The parallel backend as the scaling test sees it, minus the timings (which flake on
shared machines): the static work split, and identical tokens for every pool size."""

import dataclasses
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptpy.checkpoint import load_checkpoint
from gptpy.model import KERNELS
from conftest import ROOT, SMALL, VOCAB_50257
from gptpy.parallel import chunk
from reference import sample_gpt_c

CORES = os.cpu_count()
POOL_SIZES = sorted({1, 2, CORES, 2 * CORES})  # 2x cores: oversubscribed


@given(st.integers(0, 10**7), st.integers(1, 300))
def test_chunks_cover_every_index_exactly_once(n, K):
    bounds = [chunk(n, K, w) for w in range(K)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[w][1] == bounds[w + 1][0] for w in range(K - 1))  # contiguous, no overlap
    sizes = [hi - lo for lo, hi in bounds]
    assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1  # balanced


@pytest.mark.parametrize("prompt", [[17], [5, 100, 0, 42, 42, 3, 99, 1, 64], [31, 61]])
def test_every_pool_size_prints_the_reference_tokens(gpt, make_model, prompt):
    path = make_model(seed=1, confident=True)
    expected = sample_gpt_c(load_checkpoint(path).params, SMALL, prompt, 10)[len(prompt):]
    for K in POOL_SIZES:
        for mode in ([], ["--recompute"]):
            result = gpt("--model", path, "--threads", K, *mode, *prompt)
            assert result.returncode == 0, result.stderr
            assert list(map(int, result.stdout.split())) == expected, (K, mode)


# channels in whole blocks: decoding takes the int16 x int8 (int4) matvec (parallel.kernels._matvec_quantized)
BLOCKS = dataclasses.replace(SMALL, channels=64, num_heads=2)


@pytest.mark.parametrize("config", [SMALL, BLOCKS], ids=["C=36", "C=64"])
@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_every_pool_size_prints_the_serial_backends_tokens_in_every_dtype(gpt, make_model, dtype, config):
    path = make_model(config, seed=2, confident=True)
    prompt = [5, 100, 0, 42]
    expected = gpt("--model", path, "--backend", "serial", "--dtype", dtype, *prompt)
    assert expected.returncode == 0 and len(expected.stdout.split()) == 6, expected.stderr
    for K in POOL_SIZES:
        for mode in ([], ["--recompute"]):
            result = gpt("--model", path, "--dtype", dtype, "--threads", K, *mode, *prompt)
            assert result.stdout == expected.stdout, (K, mode, result.stderr)


def test_scaling_speedup_is_the_median_of_each_rounds_ratio():
    """A host that slows down in one round moves both sides of that round's ratio: the
    speed-up is the median of the rounds' ratios, not a ratio of the medians (here 2x)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scaling

    assert scaling.speedup([1.0, 2.0, 3.0], [1.0, 1.0, 3.0]) == 1.0
    assert scaling.speedup([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0


def test_scaling_machinery_in_small(make_model, tmp_path):
    """benchmarks/scaling.py end to end on a tiny model: every K in one process, round by
    round, the table, the plot. Only what cannot flake is asserted: the tokens, the
    speed-ups' base and the files."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scaling

    plot, lines = tmp_path / "scaling.png", []
    model = make_model(VOCAB_50257, confident=True)
    results = scaling.scaling(model, POOL_SIZES, [31373, 612], rounds=2, plot=plot, log=lines.append)
    config = load_checkpoint(model).config
    C, Vp = config.channels, config.padded_vocab_size
    matmul_bytes = 4 * (Vp * C + config.num_layers * 12 * C * C)  # float32: the LM head, each layer's four
    for K in POOL_SIZES:
        assert results[K]["tokens"] == results["serial"]["tokens"]
        assert all(results[K][w] > 0 for w in scaling.WORKLOADS) and results[K]["fma"] > 0
        assert all(results[K]["speedup"][w] > 0 for w in (*scaling.WORKLOADS, "fma"))
        assert results[K]["recompute_bytes"] == 8 * matmul_bytes  # 8 steps, each reading every matmul weight
    assert all(results[POOL_SIZES[0]]["speedup"][w] == 1 for w in (*scaling.WORKLOADS, "fma"))  # each round's own ratio
    assert "tokens: identical for every K" in lines[-2] and "FMA GFLOP/s  vs K=1" in lines[-2]
    assert "recompute reads" in lines[-2]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scaling.png"]


def test_profile_names_every_kernel_on_stderr(gpt, make_model):
    result = gpt("--model", make_model(), "--profile", "1", "2")
    assert result.returncode == 0
    assert len(result.stdout.split()) == 8  # stdout still holds only the tokens
    kernel_lines = [line.split()[0] for line in result.stderr.splitlines()[1:] if line.split()[0] in KERNELS]
    assert sorted(kernel_lines) == sorted(KERNELS) and "total" in result.stderr


@pytest.mark.parametrize("options", [[], ["--temperature", "0.8", "--top-k", "40", "--seed", "1"], ["--backend", "serial"]])
def test_profile_splits_a_step_into_kernels_fork_join_sampler_and_python(gpt, make_model, options):
    result = gpt("--model", make_model(), "--profile", *options, "1", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    step = next(i for i, line in enumerate(lines) if line.startswith("a step after the first, mean of 7:"))
    parts = {line.split("(")[0].split()[0]: line for line in lines[step + 1:-1]}
    assert {"kernels", "sampler", "Python"} <= set(parts) and ("of" in parts) == (options[:2] != ["--backend", "serial"])
    share = lambda name: float(parts[name].split("%")[0].split()[-1])  # noqa: E731
    assert abs(share("kernels") + share("sampler") + share("Python") - 100) < 0.5


@pytest.mark.parametrize("K", POOL_SIZES)
def test_threads_k_is_the_pool_the_kernels_run_on(gpt, make_model, K):
    """--threads K observed from inside: numba's own count of the pool in use at the end."""
    result = gpt("--model", make_model(), "--threads", K, "--profile", "1", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == f"pool: {K} workers"


def test_threads_must_be_positive_and_allowed(gpt, make_model):
    result = gpt("--model", make_model(), "--threads", "0", "1")
    assert result.returncode == 2 and "argument --threads: must be at least 1" in result.stderr
    capped = gpt("--model", make_model(), "--threads", "2", "1", env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert capped.returncode == 2 and len(capped.stderr.splitlines()) == 1
    assert "NUMBA_NUM_THREADS" in capped.stderr


# numba's target CPU (target.py): 512-bit vectors on every AVX-512 host

WIDTH_PROBE = """
import numpy as np
from numba import njit
from numba.core.registry import cpu_target
from gptpy import weights  # the package's kernels import it before anything compiles

@njit(fastmath=True)
def dot(a, b):
    s = np.float32(0)
    for i in range(a.size):
        s += a[i] * b[i]
    return s

x = np.ones(768, np.float32)
dot(x, x)
print(cpu_target.target_context.codegen()._get_host_cpu_features())
print("zmm" in dot.inspect_asm(dot.signatures[0]))
"""


def test_host_features_take_512_bit_vectors_only_where_avx_512_is():
    from gptpy.target import host_features
    assert host_features("+avx2,+avx512f,+fma") == "+avx2,+avx512f,+fma,-prefer-256-bit"
    assert host_features("+avx2,-avx512f,+fma") == "+avx2,-avx512f,+fma"
    assert host_features("") == ""


def width_probe(**env):
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    done = subprocess.run([sys.executable, "-c", WIDTH_PROBE], capture_output=True, text=True, timeout=120,
                          env={**environ, **env})
    assert done.returncode == 0, done.stderr
    features, zmm = done.stdout.splitlines()
    return features, zmm == "True"


def test_the_package_compiles_for_the_host_with_its_whole_vector_width():
    """LLVM tunes Intel's AVX-512 cores for 256-bit vectors; with the package imported,
    numba's loops use the 512-bit registers wherever the host has them."""
    from llvmlite import binding
    from gptpy.target import host_features
    detected = binding.get_host_cpu_features().flatten()
    features, zmm = width_probe()
    assert features == host_features(detected)
    assert zmm == ("+avx512f" in detected.split(","))


def test_a_target_the_user_names_stands():
    """NUMBA_CPU_NAME and NUMBA_CPU_FEATURES (the AVX2 code path on any host) are left as
    they are: no 512-bit register where the features leave AVX-512 out."""
    assert width_probe(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="") == ("", False)


@pytest.mark.parametrize("given", [None, "0", "300000"])
def test_workers_spin_a_while_at_barriers_unless_the_user_says(given):
    """backends.load sets libgomp's GOMP_SPINCOUNT (read once, when numba loads libgomp)
    to backends.SPIN_COUNT where the environment has none, and leaves a user's value."""
    from gptpy.backends import SPIN_COUNT
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if given is not None:
        env["GOMP_SPINCOUNT"] = given
    code = ("import os, sys; from gptpy import backends; before = 'numba.np.ufunc.omppool' in sys.modules;"
            "backends.load('parallel'); print(before, os.environ['GOMP_SPINCOUNT'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", given or SPIN_COUNT]  # libgomp loads after it is set
