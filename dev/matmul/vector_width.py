"""On an AVX-512 host, do the kernels gain from 512-bit vectors where LLVM's tuning for
the CPU prefers 256 (every Intel AVX-512 core: target.py)? The package's matmul_forward
compiled both ways, in two processes (NUMBA_CPU_FEATURES: the host's features as they
are, and with -prefer-256-bit), timed round by round in turn: a decode step's matvecs
(12 layers' four and the LM head, T = 1) and prefill's four matmuls of 12 layers at
T = 64, for each weight type; medians of the rounds, and of each round's ratio.

    python dev/matmul/vector_width.py [--model M] [--threads K] [--rounds R]
"""
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

DTYPES = ("fp32", "bf16", "int8", "int4")
MATMULS = (("qkvw", "qkvb", 1, 3), ("attprojw", "attprojb", 1, 1), ("fcw", "fcb", 1, 4), ("fcprojw", "fcprojb", 4, 1))
CHILD = "VECTOR_WIDTH_CHILD"


def child(args):
    """One process's side: each line read ("go") times every weight type once and writes
    their ms, decode then prefill, as one line."""
    from gptpy.checkpoint import CheckpointError, load_checkpoint
    kernels = args.kernels
    models = {}
    for dtype in DTYPES:
        try:
            models[dtype] = load_checkpoint(args.model, dtype)
        except CheckpointError as e:
            print(f"error {e}", flush=True)
            return
    rng = np.random.default_rng(0)

    def matmuls(ckpt, T):
        p, cfg = ckpt.params, ckpt.config
        C = cfg.channels
        x = {n: rng.standard_normal((1, T, n * C), dtype=np.float32) for n in (1, 4)}  # inputs, never written
        y = {n: np.empty((1, T, n * C), np.float32) for n in (1, 3, 4)}
        logits = np.empty((1, 1, cfg.padded_vocab_size), np.float32)
        def run():
            for l in range(cfg.num_layers):
                for w, b, c_in, c_out in MATMULS:
                    kernels.matmul_forward(y[c_out], x[c_in], p[w][l], p[b][l], 1, T, c_in * C, c_out * C)
            if T == 1:
                kernels.matmul_forward(logits, x[1], p["wte"], None, 1, 1, C, cfg.padded_vocab_size)
        run()
        return run

    work = [(matmuls(models[d], 1), matmuls(models[d], 64)) for d in DTYPES]
    print("ready", flush=True)
    for _ in sys.stdin:
        times = []
        for decode, prefill in work:
            for f in (decode, prefill):
                start = time.perf_counter()
                f()
                times.append(1e3 * (time.perf_counter() - start))
        print(" ".join(f"{t:.4f}" for t in times), flush=True)


def say(line):
    try:
        print(line, flush=True)
    except OSError as e:  # a full disk, a closed pipe
        sys.exit(f"vector_width.py: cannot write the result: {e.strerror}")


def main():
    args = devargs.parse(__doc__, [("--rounds", dict(type=devargs.at_least_one, default=15, help="rounds (default: 15)"))])
    if os.environ.get(CHILD):
        return child(args)
    from llvmlite import binding
    host = binding.get_host_cpu_features().flatten()
    if "+avx512f" not in host.split(","):
        say(f"vector_width.py: {binding.get_host_cpu_name()} has no AVX-512: one vector width, nothing to compare")
        return
    ways = {"as tuned": host, "512-bit": host + ",-prefer-256-bit"}
    procs = {}
    for name, features in ways.items():
        env = {**os.environ, CHILD: "1", "NUMBA_CPU_FEATURES": features}
        procs[name] = subprocess.Popen([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads)],
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = procs[name].stdout.readline().strip()
        if line != "ready":
            sys.exit(f"vector_width.py: {line.removeprefix('error ') or 'the measuring process failed'}")
    times = {name: [] for name in ways}
    for r in range(args.rounds):
        for name in (list(procs) if r % 2 == 0 else list(procs)[::-1]):  # each first in turn
            proc = procs[name]
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                sys.exit(f"vector_width.py: the measuring process ({name}) ended early")
            times[name].append([float(v) for v in line.split()])
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    say(f"{binding.get_host_cpu_name()}, {args.threads} workers, {args.rounds} rounds: ms (medians), "
          "512-bit's speed-up (median of the rounds' ratios)")
    say(f"{'':6s} {'decode as tuned':>16s} {'512-bit':>8s} {'speed-up':>8s} {'prefill T=64 as tuned':>22s} {'512-bit':>8s} {'speed-up':>8s}")
    for i, dtype in enumerate(DTYPES):
        cells = []
        for j in (2 * i, 2 * i + 1):
            tuned = [r[j] for r in times["as tuned"]]
            wide = [r[j] for r in times["512-bit"]]
            ratio = statistics.median(a / b for a, b in zip(tuned, wide))
            cells.append((statistics.median(tuned), statistics.median(wide), ratio))
        (a, b, r), (c, d, s) = cells
        say(f"{dtype:6s} {a:16.2f} {b:8.2f} {r:7.2f}x {c:22.2f} {d:8.2f} {s:7.2f}x")


main()
