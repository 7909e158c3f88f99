"""Where a prefill's time goes with 1 worker and with K, and how each part scales: every
kernel call of gpt2_forward timed, the matmuls split into those at every position, the
last layer's at one position and the LM head's (one position, V rows), rounds
interleaved (numba's pool resized in this process), each figure the median of the
rounds and each speed-up the median of the rounds' own ratios.

    python dev/profile/prefill.py [--model M] [--threads K] [--dtype D] [-T T] [--rounds R]
"""
import statistics
import sys
import time

import numba
import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__, [("--dtype", dict(choices=("fp32", "bf16", "int8", "int4"), default="fp32")),
                               ("-T", dict(type=devargs.at_least_one, default=64, help="prompt length (default: 64)")),
                               ("--rounds", dict(type=devargs.at_least_one, default=10))])
from gptpy import checkpoint, model  # noqa: E402
from gptpy.parallel import set_workers  # noqa: E402

K, T, REPS = args.threads, args.T, 3
ck = checkpoint.load_checkpoint(args.model, args.dtype)
cfg = ck.config
if T > cfg.max_seq_len:
    sys.exit(f"prefill.py: -T {T}: the model's context is {cfg.max_seq_len} positions")
acts = model.Activations(cfg, 1, T)
inputs = (np.arange(T, dtype=np.int32) % cfg.vocab_size).reshape(1, T)


class Timed:
    """The parallel kernels, each call's time added to its part's."""

    def __init__(self, kernels):
        self.kernels, self.seconds = kernels, {}

    def __getattr__(self, name):
        kernel = getattr(self.kernels, name)

        def timed(*a):
            start = time.perf_counter()
            kernel(*a)
            part = name
            if name == "matmul_forward":  # (out, inp, weight, bias, B, T, C, OC)
                part = "LM head" if a[7] == cfg.padded_vocab_size else f"matmul at {'one position' if a[5] == 1 else 'every position'}"
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start
        return timed


def forward_parts(k):
    """{part: seconds} of one forward with k workers, the mean of REPS."""
    numba.set_num_threads(k)
    set_workers(k)
    timed = Timed(args.kernels)
    start = time.perf_counter()
    for _ in range(REPS):
        model.gpt2_forward(timed, ck.params, cfg, acts, inputs, 1, T, 0, True)
    forward = (time.perf_counter() - start) / REPS
    parts = {name: seconds / REPS for name, seconds in timed.seconds.items()}
    parts["Python between the calls"] = forward - sum(parts.values())
    parts["the forward"] = forward
    return parts


for k in (1, K):  # warm-up: compiled code loaded, pages mapped
    forward_parts(k)
rounds = {1: [], K: []}
for r in range(args.rounds):
    for k in ((1, K) if r % 2 == 0 else (K, 1)):
        rounds[k].append(forward_parts(k))
lines = [f"a {T}-token prefill, {args.dtype}, 1 -> {K} workers, {args.rounds} rounds",
         f"{'':28}{'1 worker':>10}{f'{K} workers':>11}{'speed-up':>10}"]
for part in sorted(rounds[1][0], key=lambda p: (p == "the forward", -rounds[1][0][p])):
    one, many = (statistics.median(parts[part] for parts in rounds[k]) for k in (1, K))
    ratio = statistics.median(a[part] / b[part] for a, b in zip(rounds[1], rounds[K]))
    lines.append(f"{part:28}{1e3 * one:8.2f} ms{1e3 * many:8.2f} ms{ratio:9.2f}x")
try:
    print("\n".join(lines), flush=True)
except OSError as e:  # a full disk, a closed pipe
    sys.exit(f"prefill.py: cannot write the table: {e.strerror}")
