"""Decoding's integer matvec prefetches each row 8 KB ahead (weights.dot_blocks_int16):
with which hint? Locality 3 (prefetcht0: keep the line in every cache level) or 0
(prefetchnta: a line used once, kept out of the caches where the CPU can), the weights
being read once a step. A step's work on the model's int8 and int4 weights: each
layer's four matvecs (parallel.kernels' loop, both hints compiled in this process) and
its attention at context 64 (parallel.kernels.attention_forward), the two hints
interleaved round by round; the ms a step and the median of the rounds' ratios.

    python dev/matmul/int_prefetch_hint.py [--model M] [--threads K] [--rounds R]
"""
import statistics
import sys
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__, [("--rounds", dict(type=devargs.at_least_one, default=21, help="rounds (default: 21)"))])
from gptpy import weights  # noqa: E402
from gptpy.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from gptpy.parallel.kernels import _dot_pairs, _round_position, attention_forward, chunk  # noqa: E402
from gptpy.weights import activations_int16_size  # noqa: E402

K, CONTEXT, STEPS = args.threads, 64, 10
MATMULS = (("qkvw", "qkvb", 1, 3), ("attprojw", "attprojb", 1, 1), ("fcw", "fcb", 1, 4), ("fcprojw", "fcprojb", 4, 1))


def compiled(locality):
    """_matvec_quantized's loop (one position, no inf or NaN) with the prefetches' hint."""
    @njit(parallel=True, fastmath=True, error_model="numpy")
    def matvec(out, inp, xq, row_scale, q, scales, bias, C, OC, K):
        _round_position(xq, row_scale, inp, q, 0, 0)
        for w in prange(K):
            lo, hi = chunk(OC, K, w)
            _dot_pairs(out, xq, row_scale, q, scales, bias, 0, 0, lo, hi, C // 32)
    weights.PREFETCH_LOCALITY = locality  # read when the call above is compiled, at its first run
    return matvec


def step(matvec, p, L, C, NH, acts):
    for l in range(L):
        for w, b, c_in, c_out in MATMULS:
            q, scales = p[w][l]
            inp, out = acts[c_in], acts[c_out]
            matvec(out, inp, acts["xq"], acts["scale"], q, scales, p[b][l], c_in * C, c_out * C, K)
        attention_forward(acts["att_out"], acts["preatt"], acts["att"], acts["kv"][l], 1, CONTEXT + 1, C, NH)


for dtype in ("int8", "int4"):
    try:
        ckpt = load_checkpoint(args.model, dtype)
    except CheckpointError as e:
        sys.exit(f"int_prefetch_hint.py: {e}")
    p, cfg = ckpt.params, ckpt.config
    C, L, NH = cfg.channels, cfg.num_layers, cfg.num_heads
    rng = np.random.default_rng(0)
    acts = {n: rng.standard_normal((1, 1, n * C), dtype=np.float32) for n in (1, 3, 4)}
    acts.update(xq=np.empty((1, 1, activations_int16_size(4 * C)), np.int16), scale=np.empty((1, 1), np.float32),
                att_out=np.empty((1, 1, C), np.float32), preatt=np.empty((1, NH, 1, CONTEXT + 1), np.float32),
                att=np.empty((1, NH, 1, CONTEXT + 1), np.float32),
                kv=[rng.standard_normal((1, CONTEXT + 1, 3 * C), dtype=np.float32) for _ in range(L)])
    variants = {}
    for locality in (3, 0):
        matvec = compiled(locality)
        step(matvec, p, L, C, NH, acts)  # compiles it with this hint
        variants[locality] = matvec
    times = {locality: [] for locality in variants}
    for r in range(args.rounds):
        for locality in (variants if r % 2 == 0 else list(variants)[::-1]):
            start = time.perf_counter()
            for _ in range(STEPS):
                step(variants[locality], p, L, C, NH, acts)
            times[locality].append((time.perf_counter() - start) / STEPS)
    ratio = statistics.median(a / b for a, b in zip(times[3], times[0]))
    try:
        print(f"{dtype}, {K} workers: locality 3 {1e3 * statistics.median(times[3]):.3f} ms a step, "
              f"locality 0 {1e3 * statistics.median(times[0]):.3f} ms: locality 0 {ratio:.3f}x", flush=True)
    except OSError as e:  # a full disk, a closed pipe
        sys.exit(f"int_prefetch_hint.py: cannot write the result: {e.strerror}")
