"""Decoding's attention at long context, 12 layers of KV cache (more than L3), split by
heads (parallel.kernels._attention_forward, what decoding ran before) against split by
keys with prefetching (_decode_attention, what it runs now), with the cache in float32
and in bfloat16: median ms per token over interleaved rounds, beside the host's read
bandwidth of the moment.

    python dev/attention/split_keys.py [--threads K] [--context 1000]
"""
import statistics
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.checkpoint import float32_to_bf16
from gptpy.parallel.kernels import _attention_forward, _decode_attention

args = devargs.parse(__doc__, [("--context", dict(type=int, default=1000))])
_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
from membw import read_bandwidth  # noqa: E402

C, NH, L, K = 768, 12, 12, args.threads
T = args.context + 1
rng = np.random.default_rng(0)
for kv in ("fp32", "bf16"):
    caches = [rng.standard_normal((1, T, 3 * C), dtype=np.float32) for _ in range(L)]
    if kv == "bf16":
        caches = [float32_to_bf16(x) for x in caches]
    out, preatt = np.zeros((1, 1, C), np.float32), np.zeros((1, NH, 1, T), np.float32)
    att = np.zeros_like(preatt)
    ways = {"by heads": _attention_forward, "by keys": _decode_attention}
    times = {name: [] for name in ways}
    for _ in range(16):
        for name, kernel in ways.items():
            start = time.perf_counter()
            for cache in caches:
                kernel(out, preatt, att, cache, 1, T, C, NH, K)
            times[name].append(1e3 * (time.perf_counter() - start))
    ms = {name: statistics.median(t[1:]) for name, t in times.items()}
    cache_bytes = L * T * 2 * C * caches[0].itemsize
    print(f"context {args.context}, {kv} cache ({cache_bytes / 1e6:.0f} MB of keys and values), K={K}: "
          + ", ".join(f"{name} {m:.2f} ms ({cache_bytes / m / 1e6:.0f} GB/s)" for name, m in ms.items())
          + f"; {ms['by heads'] / ms['by keys']:.2f}x; host read bandwidth {read_bandwidth(rounds=3) / 1e9:.0f} GB/s")
