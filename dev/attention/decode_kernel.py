"""Decoding's attention kernel (parallel.kernels._decode_attention) beside the floor of
its access pattern: 12 layers of KV cache (more than L3), one query each, and two kernels
that only read the same rows (each worker its share of the keys, the key and value runs
of every row) with the same prefetch distance, the hints issued in a burst per row or
spread over the row's heads as the attention issues them. Streamed from memory, and in
cache (one layer's cache 12 times); median ms per token over interleaved rounds.

    python dev/attention/decode_kernel.py [--threads K] [--context 1000] [--kv fp32|bf16]
"""
import statistics
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.checkpoint import float32_to_bf16
from gptpy.parallel.kernels import AHEAD, _decode_attention, chunk, prefetch

args = devargs.parse(__doc__, [("--context", dict(type=int, default=1000)), ("--kv", dict(default="bf16"))])


@njit(parallel=True, fastmath=True, error_model="numpy")
def read_burst(out, inp, T, C, NH, K):
    """Every row's key and value runs, its AHEAD-th next row's lines prefetched at once."""
    found = np.zeros(K, np.uint32)
    for w in prange(K):
        lo, hi = chunk(T, K, w)
        x = np.uint32(0)
        for t2 in range(lo, hi):
            ahead = inp[0, min(t2 + AHEAD, hi - 1)]
            for j in range(C, 3 * C, 64 // inp.itemsize):
                prefetch(ahead, j)
            row = inp[0, t2, C:]
            for i in range(2 * C):
                x ^= np.uint32(row[i])
        found[w] = x
    out[0, 0, 0] = found.sum()


@njit(parallel=True, fastmath=True, error_model="numpy")
def read_spread(out, inp, T, C, NH, K):
    """The same reads, the prefetches one head's key and value lines at a time, at
    offsets from the current row, as the attention issues them."""
    hs = C // NH
    line, step = np.uint64(64 // inp.itemsize), np.uint64(inp.strides[1] // inp.itemsize)
    found = np.zeros(K, np.uint32)
    for w in prange(K):
        lo, hi = chunk(T, K, w)
        x = np.uint32(0)
        for t2 in range(lo, hi):
            row = inp[0, t2]
            far = np.uint64(AHEAD) * step if t2 + AHEAD < hi else np.uint64(0)
            for h in range(NH):
                k, v = np.uint64(C + h * hs), np.uint64(2 * C + h * hs)  # unsigned: see _decode_attention
                for first in (k + far, v + far):
                    for j in range(np.uint64(0), np.uint64(hs), line):
                        prefetch(row, first + j)
                for i in range(np.uint64(hs)):
                    x ^= np.uint32(row[k + i]) ^ np.uint32(row[v + i])
        found[w] = x
    out[0, 0, 0] = found.sum()


C, NH, L, K = 768, 12, 12, args.threads
T = args.context + 1
rng = np.random.default_rng(0)
caches = [rng.standard_normal((1, T, 3 * C), dtype=np.float32) for _ in range(L)]
if args.kv == "bf16":
    caches = [float32_to_bf16(x) for x in caches]
out, preatt = np.zeros((1, 1, C), np.float32), np.zeros((1, NH, 1, T), np.float32)
att = np.zeros_like(preatt)
ways = {"attention": lambda c: _decode_attention(out, preatt, att, c, 1, T, C, NH, K),
        "read, burst": lambda c: read_burst(out, c, T, C, NH, K),
        "read, spread": lambda c: read_spread(out, c, T, C, NH, K)}
streamed, in_cache = ({name: [] for name in ways} for _ in range(2))
for _ in range(16):
    for name, run in ways.items():
        for times, layers in ((streamed, caches), (in_cache, [caches[0]] * L)):
            start = time.perf_counter()
            for cache in layers:
                run(cache)
            times[name].append(1e3 * (time.perf_counter() - start))
cache_bytes = L * T * 2 * C * caches[0].itemsize
print(f"context {args.context}, {args.kv} cache ({cache_bytes / 1e6:.0f} MB of keys and values), K={K}, "
      f"prefetch {AHEAD} rows ahead:")
for name in ways:
    s, c = statistics.median(streamed[name][1:]), statistics.median(in_cache[name][1:])
    print(f"  {name:13} streamed {s:.2f} ms ({cache_bytes / s / 1e6:.0f} GB/s), in cache {c:.2f} ms")
