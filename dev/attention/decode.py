"""Decode attention as it really runs: 12 layers' KV caches (56 MB at context 513, more
than L3), one query each; median ms per token over interleaved rounds.

    python dev/attention/decode.py [--threads K] [--label TEXT]
"""
import time, numpy as np
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__, [("--label", dict(default=""))])
k = args.kernels
C, NH, T, L = 768, 12, 513, 12
rng = np.random.default_rng(0)
qkv = [rng.standard_normal((1, T, 3 * C), dtype=np.float32) for _ in range(L)]
out = np.zeros((1, 1, C), np.float32); pre = np.zeros((1, NH, 1, T), np.float32); att = np.zeros_like(pre)
def token():
    for l in range(L):
        k.attention_forward(out, pre, att, qkv[l], 1, T, C, NH)
token(); ts = []
for _ in range(30):
    t0 = time.perf_counter(); token(); ts.append(time.perf_counter() - t0)
print(f"{args.label} K={args.threads} attention, 12 layers, context {T}: median {1e3*np.median(ts):.2f} ms, min {1e3*min(ts):.2f} ms")
