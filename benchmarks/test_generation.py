"""The jobs a user runs, on the 124M shape, model load and JIT excluded (warm-up rounds)."""

import statistics
import time

import numpy as np
import pytest

from results import RESULTS
from membw import read_bandwidth
from gptpy.checkpoint import load_checkpoint
from gptpy.dtypes import default_kv_dtype
from gptpy import backends
from gptpy.model import Activations, generate, gpt2_forward
from gptpy.sampler import Sampler

PROMPT = [31373, 612]  # "hello there", the gpt.c job: 2 tokens in, 8 out


def test_bandwidth():
    """Not a job: the machine's read bandwidth (median of 9 reads, each checked to have
    read the whole array), measured in the same run as the jobs; the summary at the end
    compares decode with it."""
    RESULTS["bandwidth"] = read_bandwidth()


@pytest.mark.parametrize("backend,recompute,rounds", [("serial", True, 3), ("parallel", True, 5), ("parallel", False, 10)])
def test_gpt_c_job(benchmark, record, model_124M, backend, recompute, rounds):
    kernels = backends.load(backend).kernels
    benchmark.group = "gpt.c job: 2 tokens in, 8 out"
    tokens = benchmark.pedantic(lambda: list(generate(kernels, model_124M, PROMPT, 10, recompute)),
                                rounds=rounds, warmup_rounds=1)
    assert len(tokens) == 8
    record("job serial" if backend == "serial" else "job parallel recompute" if recompute else "job parallel")


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
@pytest.mark.parametrize("context", [16, 512, 1000])
def test_decode(benchmark, record, model_124M, context, dtype):
    """One new position against a KV cache holding `context` positions, in gpt's default
    precision for the weights (float32 with fp32, bfloat16 with the others)."""
    model = load_checkpoint(model_124M.path, dtype)
    config, kernels = model.config, backends.load("parallel").kernels
    acts = Activations(config, 1, context + 1, all_logits=False, kv_dtype=default_kv_dtype(dtype))
    inputs = np.arange(context + 1, dtype=np.int32).reshape(1, -1) % config.vocab_size
    gpt2_forward(kernels, model.params, config, acts, inputs, 1, context, last_only=True)  # the cache
    benchmark.group = "decode: ms per token"
    # the host's bandwidth moves from minute to minute: each decode figure is compared
    # with the mean of reads taken just before and just after it
    before = read_bandwidth(rounds=3)
    benchmark.pedantic(gpt2_forward, args=(kernels, model.params, config, acts, inputs, 1, context + 1, context, True),
                       rounds=20, warmup_rounds=2)
    name = f"decode@{context}" + ("" if dtype == "fp32" else f" {dtype}")
    RESULTS[f"bandwidth beside {name}"] = (before + read_bandwidth(rounds=3)) / 2
    benchmark.extra_info["GB/s beside"] = round(RESULTS[f"bandwidth beside {name}"] / 1e9, 1)
    record(name)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_decode_and_choose(benchmark, model_124M, dtype):
    """A decode step at context 16 and the choice of its token, as gpt makes them, with
    gpt.c's fixed coin and with `--temperature 0.8 --top-k 40 --top-p 0.95 --seed 1`,
    one after the other in each round (the host's bandwidth moves between rounds): the
    benchmark times the pair, and the summary compares the medians of each."""
    model = load_checkpoint(model_124M.path, dtype)
    config, kernels = model.config, backends.load("parallel").kernels
    acts = Activations(config, 1, 17)
    inputs = np.arange(17, dtype=np.int32).reshape(1, -1) % config.vocab_size
    gpt2_forward(kernels, model.params, config, acts, inputs, 1, 16, last_only=True)  # the cache
    samplers = {"coin": Sampler(), "sampled": Sampler(0.8, 40, 0.95, 1)}
    seconds = {name: [] for name in samplers}

    def pair():
        for name, sampler in samplers.items():
            start = time.perf_counter()
            probs = gpt2_forward(kernels, model.params, config, acts, inputs, 1, 17, 16, True)
            logits = None if sampler.fixed_coin else acts.logits_of(probs)[0, -1]
            sampler.next_token(probs[0, -1], logits, config.vocab_size)
            seconds[name].append(time.perf_counter() - start)

    benchmark.group = "decode and choose the token: ms per pair (coin, then sampled)"
    benchmark.pedantic(pair, rounds=40, warmup_rounds=3)
    for name, times in seconds.items():
        RESULTS[f"decode+{name} {dtype}"] = statistics.median(times[3:])


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8", "int4"])
@pytest.mark.parametrize("T,rounds", [(64, 5), (256, 3), (1024, 3)])
def test_prefill(benchmark, record, model_124M, T, rounds, dtype):
    """A T-token prompt in one pass, logits at the last position (what decoding needs)."""
    model = load_checkpoint(model_124M.path, dtype)
    config, kernels = model.config, backends.load("parallel").kernels
    acts = Activations(config, 1, T)
    inputs = np.arange(T, dtype=np.int32).reshape(1, T)
    benchmark.group = "prefill"
    benchmark.pedantic(gpt2_forward, args=(kernels, model.params, config, acts, inputs, 1, T, 0, True),
                       rounds=rounds, warmup_rounds=1)
    benchmark.extra_info["tokens/s"] = round(T / benchmark.stats.stats.median)
    record(f"prefill@{T}" + ("" if dtype == "fp32" else f" {dtype}"))


@pytest.mark.parametrize("dtype", ["fp32", "int8", "int4"])
def test_load(benchmark, record, model_124M, dtype):
    """load_checkpoint on a fresh map of a file in the page cache: fp32 maps it; int8
    also reads every matmul weight once through the map (its page faults) and quantizes
    it."""
    load_checkpoint(model_124M.path, dtype)  # compiled, and the file in the page cache
    benchmark.group = "load"
    benchmark.pedantic(load_checkpoint, args=(model_124M.path, dtype), rounds=7, warmup_rounds=1)
    record(f"{dtype} load")


def test_quantize(benchmark, record, model_124M):
    """The quantization alone: every matmul weight of a mapped fp32 checkpoint whose
    pages are already in (the issue: less than one 64-token prefill)."""
    from gptpy.checkpoint import MATMUL_WEIGHTS
    from gptpy.weights import quantize_int8
    weights = [load_checkpoint(model_124M.path, "fp32").params[name] for name in MATMUL_WEIGHTS]
    benchmark.group = "load"
    benchmark.pedantic(lambda: [quantize_int8(w) for w in weights], rounds=7, warmup_rounds=1)
    record("int8 quantize")


def test_first_prefill(benchmark, record, model_124M):
    """fp32: a fresh map and a 64-token prefill, which reads the weights through the map
    for the first time: the page faults that int8's load pays instead."""
    config = model_124M.config
    inputs = np.arange(64, dtype=np.int32).reshape(1, 64)

    def first():
        ck = load_checkpoint(model_124M.path, "fp32")
        gpt2_forward(backends.load("parallel").kernels, ck.params, config, Activations(config, 1, 64), inputs, 1, 64, 0, True)
    benchmark.group = "load"
    benchmark.pedantic(first, rounds=5, warmup_rounds=1)
    record("fp32 first prefill")
