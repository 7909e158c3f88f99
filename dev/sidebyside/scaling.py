"""Prefill's speed-up from 1 to K workers, gpt.py beside llama.cpp, round by round: each
round times, with 1 worker and then with K (the order reversed every other round),
gpt.py's 64-token prefill (in this process, numba's pool resized between them), the
recompute job (the gpt.c job) and the cores' FMA throughput (benchmarks/fma.py), and
llama-bench's pp64 with -t 1 and -t K on the float32 GGUF of the same weights, and its
prefills of 2 to 9 tokens, the recompute job's eight steps (the same work: llama.cpp has no
recompute mode); each program's rate the mean of 3 repetitions. Each
speed-up is the median of the rounds' own ratios: on a shared host the speed of both
programs moves by up to 1.5x from minute to minute, and a ratio of runs minutes apart
(llama-bench -t 1,2 runs every repetition of one before the other) measures that.

The GGUF comes from dev/sidebyside/llama_cpp.py (run it once first; the same --out);
llama.cpp is built outside this project, as that script's docstring says.

    python dev/sidebyside/scaling.py --llama /path/to/llama.cpp [--build build] [--model M] [--threads K] [--rounds R]
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

# llama-bench runs in the environment this script was given, not in the one backends.load
# makes for gpt.py's (its GOMP_SPINCOUNT, where none was set: llama.cpp uses libgomp too)
THEIR_ENV = dict(os.environ)
args = devargs.parse(__doc__, [("--llama", dict(required=True, help="a llama.cpp checkout, built")),
                               ("--build", dict(default="build", help="its build folder (default: build)")),
                               ("--out", dict(default="/tmp/gptpy_gguf", help="where llama_cpp.py wrote the .gguf files")),
                               ("--rounds", dict(type=devargs.at_least_one, default=7))])
gguf = os.path.join(args.out, "gpt2-f32.gguf")
if not os.path.exists(gguf):
    sys.exit(f"scaling.py: {gguf} is missing: run dev/sidebyside/llama_cpp.py with --out {args.out} first")
sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

import numba  # noqa: E402
from fma import fma_rate  # noqa: E402
from gptpy import checkpoint, model  # noqa: E402
from gptpy.parallel import set_workers  # noqa: E402

K, T = args.threads, 64
REPS = 3  # each rate the mean of 3 repetitions, as llama-bench's -r 3
ck = checkpoint.load_checkpoint(args.model, "fp32")
cfg = ck.config
acts = model.Activations(cfg, 1, T)
inputs = (np.arange(T, dtype=np.int32) % cfg.vocab_size).reshape(1, T)


def use(k):
    numba.set_num_threads(k)
    set_workers(k)


def seconds(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def llama_bench(k, prompts):
    """llama-bench's prefills with k threads, one for each prompt length: [(tokens,
    tokens/s)], each rate the mean of REPS repetitions."""
    done = subprocess.run([os.path.join(args.llama, args.build, "bin", "llama-bench"), "-m", gguf, "-t", str(k),
                           "-p", ",".join(map(str, prompts)), "-n", "0", "-r", str(REPS), "-o", "json"],
                          check=True, capture_output=True, text=True, env=THEIR_ENV)
    return [(test["n_prompt"], test["avg_ts"]) for test in json.loads(done.stdout)]


def llama_pp64(k):
    return llama_bench(k, [T])[0][1]


JOB_STEPS = range(2, 10)  # the gpt.c job: 2 tokens completed to 10, each step a prefill of 2 to 9


def llama_recompute(k):
    """Jobs/s: one over the time of llama.cpp's prefills of 2 to 9 tokens."""
    return 1 / sum(n / rate for n, rate in llama_bench(k, JOB_STEPS))


def prefill_rate(k):
    return REPS * T / seconds(lambda: [model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, T, 0, True)
                                       for _ in range(REPS)])


def recompute_rate(k):
    return REPS / seconds(lambda: [list(model.generate(args.kernels, ck, [31373, 612], JOB_STEPS.stop, True)) for _ in range(REPS)])


MEASURES = {  # name: (the rate with k workers or threads, its unit, the factor it is printed with)
    "gpt.py prefill": (prefill_rate, "tokens/s", 1),
    "gpt.py recompute": (recompute_rate, "jobs/s", 1),
    "llama.cpp pp64": (llama_pp64, "tokens/s", 1),
    "llama.cpp recompute": (llama_recompute, "jobs/s", 1),
    "FMA": (lambda k: fma_rate(k, seconds=0.05, rounds=3), "GFLOP/s", 1e-9),
}
rates = {name: {1: [], K: []} for name in MEASURES}
for k in (1, K):  # warm-up: compiled code loaded, pages mapped
    use(k)
    prefill_rate(k), recompute_rate(k)
for r in range(args.rounds):
    for k in ((1, K) if r % 2 == 0 else (K, 1)):
        use(k)
        for name, (rate, _, _) in MEASURES.items():
            rates[name][k].append(rate(k))
    print(f"round {r + 1}: " + ", ".join(f"{name} {rates[name][K][-1] / rates[name][1][-1]:.2f}x" for name in rates),
          flush=True)
print(f"1 -> {K} workers, medians of {args.rounds} rounds' ratios (rates: medians with 1 and {K})")
for name, (_, unit, scale) in MEASURES.items():
    ratios = [b / a for a, b in zip(rates[name][1], rates[name][K])]
    print(f"{name:20} {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}); "
          f"{scale * statistics.median(rates[name][1]):.1f} -> {scale * statistics.median(rates[name][K]):.1f} {unit}")
