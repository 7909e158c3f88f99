"""The cores' float32 FMA peak, as numba code reaches it: each of K workers evaluates a
polynomial of degree D by Horner's rule (D fused multiply-adds, 2D flops; one coefficient, c) on every
value of its own small array, L1-resident, many times over: 8 chains per value, so that
FMA's latency is hidden, and LLVM vectorizes across the values, so that the FMA units,
not memory or latency, set the rate (the best D and array size are taken). Prints GFLOP/s, per
core and in all, and what a prefill's rate is as a fraction of it:

    python dev/system/fma_peak.py [--threads K]

Prefill does 2 x parameters x positions flops (every weight multiplied and added once
per position); docs/performance.md divides the `make bench` prefill rate by this peak.
"""

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
from fma import fma_rate  # noqa: E402  (the kernel make scaling uses)

args = devargs.parse(__doc__, [("--seconds", dict(type=float, default=0.3))])
K = args.threads

best = 0.0
for D in (4, 8, 16):
    for n in (256, 1024):
        rate = fma_rate(K, D, n, seconds=args.seconds)
        print(f"degree {D:3d}, {n:5d} values per worker: {rate / 1e9:6.1f} GFLOP/s")
        best = max(best, rate)
print(f"float32 FMA peak with {K} workers: {best / 1e9:.0f} GFLOP/s ({best / 1e9 / K:.0f} per worker)")
