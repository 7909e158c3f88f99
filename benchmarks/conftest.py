"""Benchmarks run on a seeded random checkpoint of GPT-2 124M's shape (`make random-model`).
Each benchmark records its median in RESULTS; the end of the run prints what follows
from them side by side: decode against the bandwidth floor, and the speed-ups."""

import math
import os
from pathlib import Path

import pytest

from gptpy import checkpoint, dtypes, random_model

from results import RESULTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_124M():
    """GPT_BENCH_MODEL=path runs the benchmarks' code on another checkpoint (a quick check
    of the code itself, e.g. under the CUDA simulator); the figures are the 124M shape's."""
    if "GPT_BENCH_MODEL" in os.environ:
        return checkpoint.load_checkpoint(os.environ["GPT_BENCH_MODEL"])
    path = ROOT / "random_124M.bin"
    if not path.exists():
        checkpoint.write_checkpoint(path, checkpoint.GPT2_124M,
                                    random_model.random_pieces(checkpoint.GPT2_124M, confident=True), 3)
    return checkpoint.load_checkpoint(path)


@pytest.fixture
def record(benchmark):
    """record(name): keep this benchmark's median under `name` for the summary."""
    def keep(name):
        RESULTS[name] = benchmark.stats.stats.median
    return keep


def matmul_values(config):
    """How many values the matmul weights (checkpoint.MATMUL_WEIGHTS) hold."""
    return sum(math.prod(shape) for name, shape in checkpoint.parameter_table(config)
               if name in checkpoint.MATMUL_WEIGHTS)


def weight_bytes(config, dtype="fp32"):
    """Bytes decoding reads per token: every parameter, the matmul weights in `dtype`
    (dtypes.BYTES_PER_VALUE: int8 a byte per value and a float32 scale per QBLOCK values,
    int4 half a byte and a bfloat16 scale)."""
    matmul = matmul_values(config)
    return checkpoint.num_parameters(config) * 4 - matmul * (4 - dtypes.BYTES_PER_VALUE[dtype])


def pytest_terminal_summary(terminalreporter):
    r = RESULTS
    if not r:
        return
    line = terminalreporter.write_line
    terminalreporter.section("what the medians say (124M shape, this run)")
    if "bandwidth" in r:
        bw = r["bandwidth"]
        floor = weight_bytes(checkpoint.GPT2_124M) / bw
        line(f"memory read bandwidth: {bw / 1e9:.1f} GB/s with {os.cpu_count()} cores; "
             f"one read of the 498 MB of weights: {1e3 * floor:.1f} ms (the decode floor)")
        for dtype in ("fp32", "bf16", "int8", "int4"):
            for ctx in (16, 512, 1000):
                name = f"decode@{ctx}" + ("" if dtype == "fp32" else f" {dtype}")
                if name in r:
                    d, beside = r[name], r.get(f"bandwidth beside {name}", bw)
                    dtype_floor = weight_bytes(checkpoint.GPT2_124M, dtype) / beside
                    line(f"decode at context {ctx}, {dtype} weights: {1e3 * d:.1f} ms/token ({1 / d:.0f} tokens/s) = "
                         f"{100 * dtype_floor / d:.0f}% of its floor ({1e3 * dtype_floor:.1f} ms at the "
                         f"{beside / 1e9:.1f} GB/s read beside it)"
                         + (f"; {r[f'decode@{ctx}'] / d:.2f}x fp32" if dtype != "fp32" and f"decode@{ctx}" in r else "")
                         + (f"; {d / r[name.replace(f'@{ctx}', '@16')]:.2f}x its cost at context 16"
                            if ctx != 16 and name.replace(f"@{ctx}", "@16") in r else ""))
        if "job parallel" in r:
            line(f"gpt.c job (2 in, 8 out; 8 weight reads): {1e3 * r['job parallel']:.0f} ms = "
                 f"{r['job parallel'] / (8 * floor):.2f}x its floor of {1e3 * 8 * floor:.0f} ms")
    for a, b in (("job serial", "job parallel"), ("job serial", "job parallel recompute"),
                 ("job parallel recompute", "job parallel"), ("job torch", "job parallel")):
        if a in r and b in r:
            line(f"{b} vs {a}: {r[a] / r[b]:.1f}x faster ({1e3 * r[b]:.0f} vs {1e3 * r[a]:.0f} ms)")
    for name in ("cold start", "warm start"):
        if name in r:
            line(f"{name}, whole process (gpt --model random_124M.bin 31373 612): {r[name]:.2f} s")
    if "warm start" in r and "job parallel" in r:
        start_up = r["warm start"] - r["job parallel"]
        line(f"start-up of a warm whole process (whole minus generation): {start_up:.2f} s")
        if "chat turn" in r:
            t = r["chat turn"]
            line(f"chat turn, after the first: {1e3 * t:.0f} ms = {t / r['warm start']:.2f}x one whole gpt process "
                 f"(target <= 0.4), {t / r['job parallel']:.2f}x its generation alone (target <= 1.2)")
        if "chat first turn" in r:
            line(f"chat session of one turn (start, turn, end): {r['chat first turn']:.2f} s")
        if "1 at once" in r and "2 at once" in r:
            line(f"two gpt processes at once: {r['2 at once']:.2f} s = {r['2 at once'] / r['1 at once']:.2f}x one "
                 f"alone ({r['1 at once']:.2f} s); one after the other would be 2x")
        if "stdin 20" in r:
            line(f"gpt --stdin, 20 requests: {r['stdin 20']:.2f} s = "
                 f"{r['stdin 20'] / (20 * r['job parallel'] + start_up):.2f}x 20 generations + one start-up "
                 f"(target <= 1.1)")
    for dtype in ("fp32", "int8"):
        if f"decode+coin {dtype}" in r and f"decode+sampled {dtype}" in r:
            coin, sampled = r[f"decode+coin {dtype}"], r[f"decode+sampled {dtype}"]
            line(f"decode and choose, {dtype}: gpt.c's coin {1e3 * coin:.2f} ms, --temperature 0.8 --top-k 40 "
                 f"--top-p 0.95 --seed 1 {1e3 * sampled:.2f} ms: sampling adds {100 * (sampled / coin - 1):+.1f}%")
    for T in (64, 256, 1024):
        if f"prefill@{T}" in r:
            others = "".join(f"; {dtype} {T / r[f'prefill@{T} {dtype}']:.0f}" for dtype in ("bf16", "int8", "int4")
                             if f"prefill@{T} {dtype}" in r)
            line(f"prefill T={T}: {T / r[f'prefill@{T}']:.0f} tokens/s{others}")
    if "int8 quantize" in r and "prefill@64" in r:
        line(f"quantizing 124M's matmul weights to int8, pages in: {1e3 * r['int8 quantize']:.0f} ms = "
             f"{r['int8 quantize'] / r['prefill@64']:.2f}x one 64-token fp32 prefill (target < 1)")
    if "int8 load" in r and "fp32 first prefill" in r:
        line(f"loading as int8 from a fresh map (file pages faulted in, then quantized): {1e3 * r['int8 load']:.0f} ms; "
             f"fp32's first 64-token prefill, which faults the same pages in: {1e3 * r['fp32 first prefill']:.0f} ms, "
             f"{1e3 * (r['fp32 first prefill'] - r.get('prefill@64', 0)):.0f} ms more than a warm one")
    for name in sorted(k for k in r if k.startswith("peak ")):
        line(f"{name}: {r[name] / 1e6:.0f} MB")
    C = checkpoint.GPT2_124M.channels
    for case, (inp, out) in (("qkv", (C, 3 * C)), ("fcproj", (4 * C, C)), ("lm head", (C, 50304))):
        if f"matmul_forward {case} parallel" in r:  # test_forward.py's kernels, at T = 64
            line(f"matmul_forward {case} ({inp} -> {out}) at T=64, parallel: "
                 f"{2 * 64 * inp * out / r[f'matmul_forward {case} parallel'] / 1e9:.0f} GFLOP/s")
    if "gpu bandwidth" in r:
        floor = weight_bytes(checkpoint.GPT2_124M) / r["gpu bandwidth"]
        line(f"GPU read bandwidth: {r['gpu bandwidth'] / 1e9:.0f} GB/s; decode floor {1e3 * floor:.2f} ms/token")
        for ctx in (16, 512):
            if f"gpu decode@{ctx}" in r:
                d = r[f"gpu decode@{ctx}"]
                cpu = f" (CPU parallel: {r[f'decode@{ctx}'] / d:.1f}x slower)" if f"decode@{ctx}" in r else ""
                line(f"GPU decode at context {ctx}: {1e3 * d:.2f} ms/token = {100 * floor / d:.0f}% of its floor{cpu}")
        for T in (64, 256, 1024):
            if f"gpu prefill@{T}" in r:
                cpu = f" (CPU parallel: {r[f'prefill@{T}'] / r[f'gpu prefill@{T}']:.1f}x slower)" if f"prefill@{T}" in r else ""
                line(f"GPU prefill T={T}: {T / r[f'gpu prefill@{T}']:.0f} tokens/s{cpu}")
