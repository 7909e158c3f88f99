"""Decoding's integer matvec (weights.dot_blocks_int16), int8 against int4, two ways:

- in cache: a 2304 x 768 weight (the qkv matmul's; 2.0 MB in int8, 1.0 MB in int4)
  times one position, many times over: blocks of 32 a second and GB/s of weights read.
  Where int4 reads fewer bytes but runs fewer blocks a second than int8, its decode is
  bound by its instructions (the unpacking), not by memory.
- streamed: a 124M step's matvecs (the model file's weights, quantized at load, each
  layer's four and the LM head once a step, as decoding reads them: from memory):
  ms a step and GB/s, beside the host's read bandwidth measured right after (the floor:
  a step's bytes at that rate). Here the two rows that the kernel reads at once are two streams
  that the CPU's prefetcher follows late; the kernel prefetches PREFETCH_BYTES ahead.

    python dev/matmul/int4_matvec.py [--model M] [--threads K] [--steps N]
"""
import statistics
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.checkpoint import load_checkpoint
from gptpy.dtypes import QBLOCK
from gptpy.weights import quantize_int4, quantize_int8

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
from membw import read_bandwidth  # noqa: E402

args = devargs.parse(__doc__, [("--steps", dict(type=int, default=30, help="streamed steps (default: 30)"))])
rng = np.random.default_rng(0)
OC, C = 2304, 768
w = rng.standard_normal((OC, C)).astype(np.float32)
x = rng.standard_normal((1, 1, C)).astype(np.float32)
out = np.zeros((1, 1, OC), np.float32)
for name, weight in (("int8", quantize_int8(w)), ("int4", quantize_int4(w))):
    nbytes = weight[0].nbytes + weight[1].nbytes
    s = devargs.median_us(lambda: args.kernels.matmul_forward(out, x, weight, None, 1, 1, C, OC), 300) / 1e6
    print(f"in cache, {name}: {nbytes / 1e6:.2f} MB, {1e6 * s:.1f} us a matvec: {OC * C / 32 / s / 1e9:.2f} G blocks/s, "
          f"{nbytes / s / 1e9:.1f} GB/s (K={args.threads}, the pool's fork and join included)")

for name in ("int8", "int4"):
    p = load_checkpoint(args.model, name).params
    weights = [p[key][l] for l in range(p["qkvw"].q.shape[0]) for key in ("qkvw", "attprojw", "fcw", "fcprojw")]
    calls = [(wt, wt[0].shape[0], wt[1].shape[1] * QBLOCK) for wt in weights + [p["wte"]]]  # (weight, OC, C)
    inputs = {c: rng.standard_normal((1, 1, c)).astype(np.float32) for _, _, c in calls}
    outs = {oc: np.zeros((1, 1, oc), np.float32) for _, oc, _ in calls}
    nbytes = sum(wt[0].nbytes + wt[1].nbytes for wt, _, _ in calls)
    steps = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        for weight, oc, c in calls:
            args.kernels.matmul_forward(outs[oc], inputs[c], weight, None, 1, 1, c, oc)
        steps.append(time.perf_counter() - start)
    s = statistics.median(steps[1:])
    floor = nbytes / read_bandwidth(rounds=3)
    print(f"streamed, {name}: {nbytes / 1e6:.0f} MB a step, {1e3 * s:.2f} ms: {nbytes / s / 1e9:.1f} GB/s "
          f"(K={args.threads}, median of {args.steps} steps); the floor {1e3 * floor:.2f} ms: {floor / s:.0%} of it")
