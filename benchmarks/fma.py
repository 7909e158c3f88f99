"""The cores' float32 FMA throughput, as numba code reaches it: each of K workers
evaluates a polynomial of degree D by Horner's rule on every value of its own small
array (L1-resident), many times over, with `chains` independent chains per value so that
FMA's latency is hidden; LLVM vectorizes across the values, so the FMA units, not memory
or latency, set the rate. `make scaling` prints its scaling with K beside the model's;
dev/system/fma_peak.py sweeps D and the array size for the peak.
"""

import time

import numpy as np
from numba import njit, prange

from gptpy.parallel.kernels import chunk

_kernels = {}


def horner(D, chains=8):
    """The compiled kernel for degree D, its chains written out so that the loop over the
    values is the innermost one, which LLVM vectorizes."""
    if (D, chains) in _kernels:
        return _kernels[D, chains]
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
    _kernels[D, chains] = njit(parallel=True, fastmath={"contract"}, error_model="numpy")(scope["run"])
    return _kernels[D, chains]


def fma_rate(K, D=8, n=1024, seconds=0.2, rounds=5, chains=8):
    """Median flops per second of K workers, each on n values, degree D."""
    run = horner(D, chains)
    x = np.full(n * K, np.float32(0.5), dtype=np.float32)
    coeffs = np.linspace(0.01, 0.02, chains).astype(np.float32)  # from 0.5 the values stay small: no subnormals
    run(x, coeffs, 1, K)
    repeats = 1
    while True:
        start = time.perf_counter()
        run(x, coeffs, repeats, K)
        if time.perf_counter() - start > seconds:
            break
        repeats *= 2
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(x, coeffs, repeats, K)
        rates.append(2 * D * chains * n * K * repeats / (time.perf_counter() - start))
    return float(np.median(rates))
