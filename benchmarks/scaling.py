"""The speed-up scaling test: the parallel backend with K = 1 .. cores workers (and 2x
cores, oversubscribed) against K = 1 and against the serial reference, on three
workloads, like for like:

  recompute  the gpt.c job (2 tokens in, 8 out), whole prefix every step, all logits:
             compute-bound, like gpt.c and llm.c's OpenMP build
  prefill    a 64-token prompt in one pass: compute-bound
  decode     one new token against a KV cache of 16: memory-bound, it scales with
             bandwidth, not cores

Every K runs in one process, round by round: each round runs each workload once with
each K in turn (the order reversed every other round), and a speed-up is the median of
the rounds' own ratios, so that a shared host that slows down or speeds up between
rounds moves both sides of each ratio alike (one process per K, minutes apart, gave a
64-token prefill's speed-up from 1 to 2 workers anywhere from 1.6x to 2.0x on the same
cores). The serial reference runs in a process of its own. Prints a table, checks that
every K printed the same tokens as serial, and plots speed-up vs K. Each round also
measures, with each K, the memory read bandwidth its workers get (what decode, and the
recompute job's short steps, scale with; beside it the rate at which the recompute job
read its weights) and the cores' float32 FMA throughput (benchmarks/fma.py: the ceiling
of compute-bound scaling), their speed-ups taken the same way.

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
DECODE_STEPS = 5  # a decode step is short: each round times this many, their median


def seconds(fn):
    """The seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def workloads(kernels, ckpt, prompt):
    """{workload: a function that runs it once}, and the tokens of the recompute and the
    cached generation."""
    import numpy as np

    from gptpy.model import Activations, generate, gpt2_forward

    config, params = ckpt.config, ckpt.params
    n = min(10, config.max_seq_len)
    tokens = {"recompute": list(map(int, generate(kernels, ckpt, prompt, n, recompute=True))),
              "cache": list(map(int, generate(kernels, ckpt, prompt, n, recompute=False)))}
    T = min(64, config.max_seq_len)
    acts = Activations(config, 1, T)
    inputs = (np.arange(T, dtype=np.int32) % config.vocab_size).reshape(1, T)
    ctx = min(16, config.max_seq_len - 1)
    gpt2_forward(kernels, params, config, acts, inputs, 1, ctx, 0, True)  # decode's cache: positions [0, ctx)

    def decode():  # position ctx against the cache, each time the same
        for _ in range(DECODE_STEPS):
            gpt2_forward(kernels, params, config, acts, inputs, 1, ctx + 1, ctx, True)

    def prefill():  # rewrites decode's cache with the same values (the same inputs)
        gpt2_forward(kernels, params, config, acts, inputs, 1, T, 0, True)

    return {"recompute": lambda: list(generate(kernels, ckpt, prompt, n, recompute=True)),
            "prefill": prefill, "decode": decode}, tokens


def recompute_bytes(ckpt, prompt):
    """What the recompute job reads: every matmul weight once a step, n - len(prompt) steps."""
    from gptpy.dtypes import BYTES_PER_VALUE
    from conftest import matmul_values
    n = min(10, ckpt.config.max_seq_len)
    return (n - len(prompt)) * matmul_values(ckpt.config) * BYTES_PER_VALUE[ckpt.dtype]


def serial_worker(model_path, prompt, rounds, dtype=None):
    """The serial reference's medians: {workload: seconds, "tokens": {...}}."""
    from gptpy import backends
    from gptpy.checkpoint import load_checkpoint

    kernels = backends.load("serial", 1).kernels
    ckpt = load_checkpoint(model_path, dtype)
    run, tokens = workloads(kernels, ckpt, prompt)
    result = {"tokens": tokens}
    for w in WORKLOADS:
        run[w]()  # warm-up: compiled code loaded, pages mapped
        result[w] = statistics.median(seconds(run[w]) for _ in range(rounds)) / (DECODE_STEPS if w == "decode" else 1)
    return result


def parallel_worker(thread_counts, model_path, prompt, rounds, dtype=None):
    """Every K of thread_counts in this process, round by round: {K: {workload: median
    seconds, "speedup": {workload, "fma": the median of the rounds' ratios to the first
    K}, "bandwidth", "fma": medians, "tokens": {...}, "recompute_bytes"}}."""
    import numba

    from gptpy import backends
    from gptpy.checkpoint import load_checkpoint, num_parameters
    from fma import fma_rate
    from membw import ones, read_seconds

    backend = backends.load("parallel", max(thread_counts))
    ckpt = load_checkpoint(model_path, dtype)
    array = ones(max(64 << 20, 5 * num_parameters(ckpt.config)))  # past the caches: 1.25x the weights' bytes

    def use(K):
        numba.set_num_threads(K)
        backend.kernels.set_workers(K)

    results = {}
    for K in thread_counts:  # each K's tokens, and a warm-up: compiled code loaded, pages mapped
        use(K)
        run, tokens = workloads(backend.kernels, ckpt, prompt)
        for w in WORKLOADS:
            run[w]()
        read_seconds(array)
        results[K] = {"tokens": tokens, "recompute_bytes": recompute_bytes(ckpt, prompt)}
    times = {K: {w: [] for w in (*WORKLOADS, "read", "fma")} for K in thread_counts}
    for r in range(rounds):
        for K in (thread_counts if r % 2 == 0 else thread_counts[::-1]):
            use(K)
            for w in WORKLOADS:
                times[K][w].append(seconds(run[w]) / (DECODE_STEPS if w == "decode" else 1))
            times[K]["read"].append(read_seconds(array))
            times[K]["fma"].append(1 / fma_rate(K, seconds=0.02, rounds=3))
    base = times[thread_counts[0]]
    for K in thread_counts:
        mine = times[K]
        results[K].update({w: statistics.median(mine[w]) for w in WORKLOADS})
        results[K]["speedup"] = {w: speedup(base[w], mine[w]) for w in (*WORKLOADS, "fma")}
        results[K]["bandwidth"] = array.nbytes / statistics.median(mine["read"])
        results[K]["fma"] = 1 / statistics.median(mine["fma"])
    return results


def speedup(base, mine):
    """The median of the rounds' own ratios base[r] / mine[r] (seconds): each taken within
    one round, where a ratio of medians would pair rounds minutes apart."""
    return statistics.median(b / m for b, m in zip(base, mine, strict=True))


def run_worker(command, threads, model_path, prompt, rounds, dtype=None):
    """serial_worker or parallel_worker in a fresh interpreter, numba's pool sized for the
    largest K before numba is imported (NUMBA_NUM_THREADS: set_num_threads cannot go past
    it, and the oversubscribed point is past the cores)."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(max(*threads, os.cpu_count() or 1)))
    argv = [sys.executable, __file__, "--worker", command, "--threads", ",".join(map(str, threads)),
            "--model", str(model_path), "--prompt", ",".join(map(str, prompt)), "--rounds", str(rounds),
            *(["--dtype", dtype] if dtype else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command} worker failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(model_path, thread_counts, prompt, rounds, plot=None, log=print, dtype=None):
    """Runs serial once and parallel for each K; returns {"serial": ..., K: ...}."""
    results = {"serial": run_worker("serial", [1], model_path, prompt, max(1, rounds // 3), dtype)}
    log(f"serial: recompute {1e3 * results['serial']['recompute']:.0f} ms")
    parallel = run_worker("parallel", thread_counts, model_path, prompt, rounds, dtype)
    for K in thread_counts:
        results[K] = parallel[str(K)]
        log(f"K={K}: " + ", ".join(f"{w} {1e3 * results[K][w]:.1f} ms" for w in WORKLOADS))
    log(table(results, thread_counts))
    if plot:
        draw(results, thread_counts, plot)
        log(f"wrote {plot}")
    return results


def table(results, thread_counts):
    serial = results["serial"]
    cores = os.cpu_count()
    lines = [f"{'K':>6} " + "".join(f"| {w + ' ms':>13} {'vs K=1':>7} {'vs serial':>9} " for w in WORKLOADS)
             + "|   read bandwidth | recompute reads | FMA GFLOP/s  vs K=1"]
    for K in thread_counts:
        r = results[K]
        cells = "".join(f"| {1e3 * r[w]:>13.1f} {r['speedup'][w]:>6.2f}x {serial[w] / r[w]:>8.1f}x " for w in WORKLOADS)
        lines.append(f"{K:>6} {cells}| {r['bandwidth'] / 1e9:>6.1f} GB/s      | "
                     f"{r['recompute_bytes'] / r['recompute'] / 1e9:>10.1f} GB/s | {r['fma'] / 1e9:>11.0f} "
                     f"{r['speedup']['fma']:>5.2f}x" + ("  (oversubscribed)" if K > cores else ""))
    lines.append("serial " + "".join(f"| {1e3 * serial[w]:>13.1f} {'':>17} " for w in WORKLOADS))
    same = all(results[K]["tokens"] == serial["tokens"] for K in thread_counts)
    lines.append(f"tokens: {'identical for every K and serial, with and without the KV cache' if same else 'DIFFER'}")
    return "\n".join(lines)


def draw(results, thread_counts, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = os.cpu_count()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(thread_counts, [min(K, cores) for K in thread_counts], "k--", label="ideal (linear up to the cores)")
    for workload, marker in zip(WORKLOADS, "osd"):
        ax.plot(thread_counts, [results[K]["speedup"][workload] for K in thread_counts],
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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--plot", default=str(ROOT / "scaling.png"))
    parser.add_argument("--dtype", choices=("fp32", "bf16", "int8", "int4"), help="the weights' precision (default: the file's own)")
    parser.add_argument("--worker", choices=("serial", "parallel"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1 (each speed-up is the median of the rounds' ratios)")
    prompt = [int(t) for t in args.prompt.split(",")]
    if args.worker == "serial":
        print(json.dumps(serial_worker(args.model, prompt, args.rounds, args.dtype)))
        return 0
    if args.worker == "parallel":
        threads = [int(k) for k in args.threads.split(",")]
        print(json.dumps(parallel_worker(threads, args.model, prompt, args.rounds, args.dtype)))
        return 0
    cores = os.cpu_count()
    thread_counts = [int(k) for k in args.threads.split(",")] if args.threads else [*range(1, cores + 1), 2 * cores]
    scaling(args.model, thread_counts, prompt, args.rounds, args.plot, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
