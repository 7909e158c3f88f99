"""The speed-up scaling test: the parallel backend with K = 1 .. cores workers (and 2x
cores, oversubscribed) against K = 1 and against the serial reference, on three
workloads, like for like:

  recompute  the gpt.c job (2 tokens in, 8 out), whole prefix every step, all logits:
             compute-bound, like gpt.c and llm.c's OpenMP build
  prefill    a 64-token prompt in one pass: compute-bound
  decode     one new token against a KV cache of 16: memory-bound, it scales with
             bandwidth, not cores

Each K runs in its own process: numba fixes its pool's maximum size at import
(NUMBA_NUM_THREADS), so the oversubscribed point needs a fresh interpreter. Prints a
table, checks that every K printed the same tokens as serial, and plots speed-up vs K.
Each K also measures the memory read bandwidth its workers get (what decode, and the
recompute job's short steps, scale with; beside it the rate at which the recompute job
read its weights) and the cores' float32 FMA throughput with K workers
(benchmarks/fma.py: the ceiling of compute-bound scaling), beside the speed-ups.

    python benchmarks/scaling.py [--model random_124M.bin] [--threads 1,2,4] [--plot scaling.png]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKLOADS = ("recompute", "prefill", "decode")


def median_seconds(fn, rounds):
    fn()  # warm-up: compiled code loaded, pages mapped
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(backend, threads, model_path, prompt, rounds, dtype=None):
    """One process's measurements: {workload: median seconds, "tokens": {...}}."""
    import numpy as np

    from gptpy import backends
    from gptpy.checkpoint import load_checkpoint, num_parameters
    from gptpy.dtypes import BYTES_PER_VALUE
    from conftest import matmul_values
    from gptpy.model import Activations, generate, gpt2_forward
    from fma import fma_rate
    from membw import read_bandwidth

    kernels = backends.load(backend, threads).kernels
    ckpt = load_checkpoint(model_path, dtype)
    config, params = ckpt.config, ckpt.params
    n = min(10, config.max_seq_len)
    result = {"tokens": {"recompute": list(map(int, generate(kernels, ckpt, prompt, n, recompute=True))),
                         "cache": list(map(int, generate(kernels, ckpt, prompt, n, recompute=False)))}}
    result["recompute"] = median_seconds(lambda: list(generate(kernels, ckpt, prompt, n, recompute=True)), rounds)
    # what the recompute job reads: every matmul weight once a step, n - len(prompt) steps
    result["recompute_bytes"] = (n - len(prompt)) * matmul_values(config) * BYTES_PER_VALUE[ckpt.dtype]

    T = min(64, config.max_seq_len)
    acts = Activations(config, 1, T)
    inputs = (np.arange(T, dtype=np.int32) % config.vocab_size).reshape(1, T)
    result["prefill"] = median_seconds(lambda: gpt2_forward(kernels, params, config, acts, inputs, 1, T, 0, True), rounds)

    # the read bandwidth K workers get, on an array past the caches: 1.25x the weights' bytes
    result["bandwidth"] = read_bandwidth(max(64 << 20, 5 * num_parameters(config)), rounds=max(3, rounds))

    ctx = min(16, config.max_seq_len - 1)
    gpt2_forward(kernels, params, config, acts, inputs, 1, ctx, 0, True)  # the cache
    step = lambda: gpt2_forward(kernels, params, config, acts, inputs, 1, ctx + 1, ctx, True)
    result["decode"] = median_seconds(step, 5 * rounds)
    if backend == "parallel":  # the cores' own FMA throughput with K workers: the ceiling of compute-bound scaling
        result["fma"] = fma_rate(threads, seconds=0.05 * rounds)
    return result


def run_worker(backend, threads, model_path, prompt, rounds, dtype=None):
    """worker() in a fresh interpreter, its pool sized before numba is imported."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(max(threads, os.cpu_count() or 1)))
    command = [sys.executable, __file__, "--worker", backend, "--threads", str(threads), "--model", str(model_path),
               "--prompt", ",".join(map(str, prompt)), "--rounds", str(rounds), *(["--dtype", dtype] if dtype else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker K={threads} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(model_path, thread_counts, prompt, rounds, plot=None, log=print, dtype=None):
    """Runs serial once and parallel for each K; returns {"serial": ..., K: ...}."""
    results = {"serial": run_worker("serial", 1, model_path, prompt, max(1, rounds // 3), dtype)}
    log(f"serial: recompute {1e3 * results['serial']['recompute']:.0f} ms")
    for K in thread_counts:
        results[K] = run_worker("parallel", K, model_path, prompt, rounds, dtype)
        log(f"K={K}: " + ", ".join(f"{w} {1e3 * results[K][w]:.1f} ms" for w in WORKLOADS))
    log(table(results, thread_counts))
    if plot:
        draw(results, thread_counts, plot)
        log(f"wrote {plot}")
    return results


def table(results, thread_counts):
    base, serial = results[thread_counts[0]], results["serial"]
    cores = os.cpu_count()
    lines = [f"{'K':>6} " + "".join(f"| {w + ' ms':>13} {'vs K=1':>7} {'vs serial':>9} " for w in WORKLOADS)
             + "|   read bandwidth | recompute reads | FMA GFLOP/s  vs K=1"]
    for K in thread_counts:
        r = results[K]
        cells = "".join(f"| {1e3 * r[w]:>13.1f} {base[w] / r[w]:>6.2f}x {serial[w] / r[w]:>8.1f}x " for w in WORKLOADS)
        lines.append(f"{K:>6} {cells}| {r['bandwidth'] / 1e9:>6.1f} GB/s      | "
                     f"{r['recompute_bytes'] / r['recompute'] / 1e9:>10.1f} GB/s | {r['fma'] / 1e9:>11.0f} "
                     f"{r['fma'] / base['fma']:>5.2f}x" + ("  (oversubscribed)" if K > cores else ""))
    lines.append("serial " + "".join(f"| {1e3 * serial[w]:>13.1f} {'':>17} " for w in WORKLOADS))
    same = all(results[K]["tokens"] == serial["tokens"] for K in thread_counts)
    lines.append(f"tokens: {'identical for every K and serial, with and without the KV cache' if same else 'DIFFER'}")
    return "\n".join(lines)


def draw(results, thread_counts, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = os.cpu_count()
    base = results[thread_counts[0]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(thread_counts, [min(K, cores) for K in thread_counts], "k--", label="ideal (linear up to the cores)")
    for workload, marker in zip(WORKLOADS, "osd"):
        ax.plot(thread_counts, [base[workload] / results[K][workload] for K in thread_counts],
                marker=marker, label=workload)
    ax.axvline(cores, color="grey", lw=0.8)
    ax.text(cores, 0.2, f" {cores} cores", color="grey")
    ax.set(xlabel="workers K", ylabel="speed-up over K = 1", xticks=thread_counts, ylim=(0, None),
           title="gpt.py parallel backend: speed-up vs workers")
    ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "random_124M.bin"))
    parser.add_argument("--threads", help="comma-separated K values (default: 1 .. cores, and 2x cores)")
    parser.add_argument("--prompt", default="31373,612")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--plot", default=str(ROOT / "scaling.png"))
    parser.add_argument("--dtype", choices=("fp32", "bf16", "int8", "int4"), help="the weights' precision (default: the file's own)")
    parser.add_argument("--worker", choices=("serial", "parallel"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    prompt = [int(t) for t in args.prompt.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.threads), args.model, prompt, args.rounds, args.dtype)))
        return 0
    cores = os.cpu_count()
    thread_counts = [int(k) for k in args.threads.split(",")] if args.threads else [*range(1, cores + 1), 2 * cores]
    scaling(args.model, thread_counts, prompt, args.rounds, args.plot, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
