"""attention_forward alone at the 124M shape: prefill T = 1024 and 256, decode at context
513 and 17; ms and GFLOP/s.

    python dev/attention/time.py [--threads K]
"""
import time, numpy as np
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
k = devargs.parse(__doc__).kernels
C, NH = 768, 12
rng = np.random.default_rng(0)
def timeit(f, n=5):
    f(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return np.median(ts)
for T, Tq in [(1024, 1024), (256, 256), (513, 1), (17, 1)]:
    inp = rng.standard_normal((1, T, 3 * C), dtype=np.float32)
    out = np.zeros((1, Tq, C), np.float32); pre = np.zeros((1, NH, Tq, T), np.float32); att = np.zeros_like(pre)
    t = timeit(lambda: k.attention_forward(out, pre, att, inp, 1, T, C, NH))
    flops = 4 * NH * (C // NH) * sum(T - Tq + tq + 1 for tq in range(Tq))
    print(f"T={T} Tq={Tq}: {1e3*t:8.3f} ms  {flops/t/1e9:5.1f} GFLOP/s  (x12 layers: {12e3*t:.1f} ms)")
