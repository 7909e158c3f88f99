"""Decoding's float32 and bfloat16 matvec (matmul_forward at T = 1): one dot product at a
time, each row's lines asked for FLOAT_PREFETCH_BYTES ahead (the package's loop,
parallel.kernels._prefetch_ahead and _dot_rows), or 2 or 8 KB ahead, or without asking;
two rows at a time sharing each load of the input; one row at a time from each half of the
worker's channels in turn (two streams of the weights)? A decode step's matvecs (12
layers' four and the LM head), the loops compiled in this process and interleaved round
by round; ms a step (medians) and each against one row without prefetches (median of the
rounds' ratios).

    python dev/matmul/matvec_rows.py [--model M] [--threads K] [--rounds R]
"""
import statistics
import sys
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__, [("--rounds", dict(type=devargs.at_least_one, default=21, help="rounds (default: 21)"))])
from gptpy.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from gptpy.parallel.kernels import (FLOAT_PREFETCH_BYTES, MAX_BLOCK_ROWS, _bias_at, _dot_rows,  # noqa: E402
                                   _matmul_forward, _prefetch_ahead, chunk)
from gptpy.weights import weight_at  # noqa: E402

K = args.threads
MATMULS = (("qkvw", "qkvb", 1, 3), ("attprojw", "attprojb", 1, 1), ("fcw", "fcb", 1, 4), ("fcprojw", "fcprojb", 4, 1))
jit = njit(parallel=True, fastmath=True, error_model="numpy")
inline = njit(fastmath=True, error_model="numpy", inline="always")


@jit
def one_row(out, inp, weight, bias, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        for o in range(lo, hi):
            _dot_rows(out, inp, weight, bias, 0, o, o, 0, 1, C)


def package(out, inp, weight, bias, C, OC, K):
    _matmul_forward(out, inp, weight, bias, 1, 1, C, OC, K, MAX_BLOCK_ROWS)


def prefetched(ahead_bytes):
    """The package's loop with its lines asked for ahead_bytes ahead."""
    @jit
    def loop(out, inp, weight, bias, C, OC, K):
        for w in prange(K):
            lo, hi = chunk(OC, K, w)
            for o in range(lo, hi):
                _prefetch_ahead(weight, o, hi, C, ahead_bytes)
                _dot_rows(out, inp, weight, bias, 0, o, o, 0, 1, C)
    return loop


@inline
def _dot_two(out, inp, weight, bias, o, p, C):
    """out[0, 0, o] and out[0, 0, p], one pass over the input."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    for i in range(C):
        x = inp[0, 0, i]
        a0 += x * weight_at(weight, o, i)
        a1 += x * weight_at(weight, p, i)
    out[0, 0, o] = a0 + _bias_at(bias, o)
    out[0, 0, p] = a1 + _bias_at(bias, p)


@jit
def two_rows(out, inp, weight, bias, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        o = lo
        while o + 2 <= hi:
            _dot_two(out, inp, weight, bias, o, o + 1, C)
            o += 2
        if o < hi:
            _dot_rows(out, inp, weight, bias, 0, o, o, 0, 1, C)


@jit
def two_streams(out, inp, weight, bias, C, OC, K):
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        half = (hi - lo) // 2
        for j in range(half):
            _dot_rows(out, inp, weight, bias, 0, lo + j, lo + j, 0, 1, C)
            _dot_rows(out, inp, weight, bias, 0, lo + half + j, lo + half + j, 0, 1, C)
        if (hi - lo) % 2:
            _dot_rows(out, inp, weight, bias, 0, hi - 1, hi - 1, 0, 1, C)


def step(matvec, p, cfg, x, y, logits):
    C = cfg.channels
    for l in range(cfg.num_layers):
        for w, b, c_in, c_out in MATMULS:
            matvec(y[c_out], x[c_in], p[w][l], p[b][l], c_in * C, c_out * C, K)
    matvec(logits, x[1], p["wte"], None, C, cfg.padded_vocab_size, K)


def say(line):
    try:
        print(line, flush=True)
    except OSError as e:  # a full disk, a closed pipe
        sys.exit(f"matvec_rows.py: cannot write the result: {e.strerror}")


LOOPS = {"one row": one_row, f"{FLOAT_PREFETCH_BYTES >> 10} KB ahead (package)": package,
         "2 KB ahead": prefetched(2048), "8 KB ahead": prefetched(8192), "two rows": two_rows, "two streams": two_streams}
say(f"{K} workers, {args.rounds} rounds: ms a step's matvecs (median), and against one row")
for dtype in ("fp32", "bf16"):
    try:
        ckpt = load_checkpoint(args.model, dtype)
    except CheckpointError as e:
        sys.exit(f"matvec_rows.py: {e}")
    p, cfg = ckpt.params, ckpt.config
    rng = np.random.default_rng(0)
    x = {n: rng.standard_normal((1, 1, n * cfg.channels), dtype=np.float32) for n in (1, 4)}
    outs = {name: ({n: np.empty((1, 1, n * cfg.channels), np.float32) for n in (1, 3, 4)},
                   np.empty((1, 1, cfg.padded_vocab_size), np.float32)) for name in LOOPS}
    for name, f in LOOPS.items():
        step(f, p, cfg, x, *outs[name])
    for name in LOOPS:  # the same sums, in another order at most
        for a, b in zip([*outs[name][0].values(), outs[name][1]], [*outs["one row"][0].values(), outs["one row"][1]]):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-3), name
    times = {name: [] for name in LOOPS}
    for r in range(args.rounds):
        for name in list(LOOPS)[r % len(LOOPS):] + list(LOOPS)[:r % len(LOOPS)]:  # each loop first in turn
            f = LOOPS[name]
            start = time.perf_counter()
            step(f, p, cfg, x, *outs[name])
            times[name].append(1e3 * (time.perf_counter() - start))
    cells = [f"{name} {statistics.median(t):.2f} ms ({statistics.median(a / b for a, b in zip(times['one row'], t)):.2f}x)"
             for name, t in times.items()]
    say(f"{dtype}: " + ", ".join(cells))
