"""Decode against its bandwidth floor, reliably: R runs, each measuring the read
bandwidth (benchmarks/membw.py) right before decode at context 16 for fp32, bf16 and
int8 (median of 20 steps each), so that every fraction pairs a decode with its own
bandwidth (this machine's moved between 48 and 83 GB/s from one minute to the next).
Prints each run and the median fraction of each dtype's floor (weights' bytes /
bandwidth).

    python dev/sidebyside/floor_runs.py [--runs R] [--model M] [--threads K]
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from conftest import weight_bytes  # noqa: E402
from membw import read_bandwidth  # noqa: E402

from gptpy import checkpoint, model  # noqa: E402

args = devargs.parse(__doc__, [("--runs", dict(type=int, default=7))])
DTYPES = ("fp32", "bf16", "int8")
models = {d: checkpoint.load_checkpoint(args.model, d) for d in DTYPES}


def decode_seconds(ck):
    cfg = ck.config
    acts = model.Activations(cfg, 1, 17)
    inputs = (np.arange(17, dtype=np.int32) % cfg.vocab_size).reshape(1, -1)
    model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, 16, last_only=True)
    steps = []
    for _ in range(20):
        start = time.perf_counter()
        model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, 17, 16, True)
        steps.append(time.perf_counter() - start)
    return statistics.median(steps)


fractions = {d: [] for d in DTYPES}
for run in range(args.runs):
    bw = read_bandwidth(rounds=5)
    line = f"run {run + 1}: {bw / 1e9:5.1f} GB/s"
    for d in DTYPES:
        seconds = decode_seconds(models[d])
        fractions[d].append(weight_bytes(models[d].config, d) / bw / seconds)
        line += f"; {d} {1e3 * seconds:5.2f} ms = {100 * fractions[d][-1]:3.0f}% of its floor"
    print(line, flush=True)
print("median fraction of the floor: " + ", ".join(f"{d} {100 * statistics.median(f):.0f}% "
                                                  f"(range {100 * min(f):.0f}-{100 * max(f):.0f}%)"
                                                  for d, f in fractions.items()))
