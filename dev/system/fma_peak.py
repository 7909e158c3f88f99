"""The cores' float32 FMA peak, as numba code reaches it: each of K workers evaluates a
polynomial of degree D by Horner's rule (D fused multiply-adds, 2D flops; one coefficient, c) on every
value of its own small array, L1-resident, many times over: 8 chains per value, so that
FMA's latency is hidden, and LLVM vectorizes across the values, so that the FMA units,
not memory or latency, set the rate (the best D and array size are taken). Prints GFLOP/s, per
core and in all, and what a prefill's rate is as a fraction of it:

    python dev/system/fma_peak.py [--threads K]

Prefill does 2 x parameters x positions flops (every weight multiplied and added once
per position); the README divides the `make bench` prefill rate by this peak.
"""
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.parallel.kernels import chunk

args = devargs.parse(__doc__, [("--seconds", dict(type=float, default=0.3))])
K = args.threads


def horner(D, chains=8):
    """The kernel for degree D: `chains` independent Horner chains per value (FMA's
    latency times its units' count is ~8 chains in flight), written out, so that the
    loop over the values is the innermost one, which LLVM vectorizes."""
    # distinct coefficients read at run time: the chains cannot be folded into one
    lines = [f"                p{k} = v + c{k}" for k in range(chains)]
    for _ in range(D):
        lines += [f"                p{k} = p{k} * v + c{k}" for k in range(chains)]
    loads = "\n".join(f"    c{k} = c[{k}]" for k in range(chains))
    total = " + ".join(f"p{k}" for k in range(chains))
    source = f"""
def run(x, c, repeats, K):
{loads}
    for w in prange(K):
        lo, hi = chunk(x.shape[0], K, w)
        xs = x[lo:hi]  # a view: with the offset in the index, LLVM left this loop scalar
        for _ in range(repeats):
            for j in range(hi - lo):
                v = xs[j]
{chr(10).join(lines)}
                xs[j] = ({total}) * c[0]
"""
    scope = {"prange": prange, "chunk": chunk}
    exec(source, scope)
    # "contract" only: fused multiply-adds, but no reassociation, with which LLVM factors
    # the chains into shared powers of v and skips most of the work
    return njit(parallel=True, fastmath={"contract"}, error_model="numpy")(scope["run"])


best = 0.0
for D in (4, 8, 16):
    run = horner(D)
    for n in (256, 1024):
        x = np.full(n * K, np.float32(0.5), dtype=np.float32)
        coeffs = np.linspace(0.01, 0.02, 8).astype(np.float32)  # from 0.5, the values stay small: no overflow, no subnormals
        run(x, coeffs, 1, K)
        repeats = 1
        while True:
            start = time.perf_counter()
            run(x, coeffs, repeats, K)
            seconds = time.perf_counter() - start
            if seconds > args.seconds:
                break
            repeats *= 2
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            run(x, coeffs, repeats, K)
            rates.append(2 * D * 8 * n * K * repeats / (time.perf_counter() - start))
        rate = float(np.median(rates))
        print(f"degree {D:3d}, {n:5d} values per worker: {rate / 1e9:6.1f} GFLOP/s")
        best = max(best, rate)
print(f"float32 FMA peak with {K} workers: {best / 1e9:.0f} GFLOP/s ({best / 1e9 / K:.0f} per worker)")
