"""Where a small kernel stops paying for the pool: the elementwise and per-position
kernels (residual, GELU, layernorm, fused residual + layernorm) at growing sizes, their
body on the calling thread (K = 1: no parallel region) against the pool of K workers,
beside an empty parallel region. Medians of interleaved calls, in microseconds. The
parallel backend runs kernels of at most ON_CALLER values on the caller.

    python dev/profile/small_kernels.py [--threads K] [--rounds R]
"""
import numpy as np
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__, [("--rounds", dict(type=int, default=300))])
from gptpy.parallel import kernels as pk  # noqa: E402

K, C = args.threads, 768
rng = np.random.default_rng(0)


def median_us(f):
    return devargs.median_us(f, args.rounds)


print(f"ON_CALLER = {pk.ON_CALLER} values; an empty parallel region: {1e6 * pk.fork_join_seconds():.1f} us")
print(f"{'kernel':<28}{'values':>8}{'caller us':>11}{'pool us':>9}")
for positions in (1, 4, 16, 64):
    n = positions * C
    x, y, out = (rng.standard_normal(4 * n).astype(np.float32) for _ in range(3))
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    mean, rstd = np.empty(positions, np.float32), np.empty(positions, np.float32)
    rows = lambda a: a[:n].reshape(1, positions, C)  # noqa: E731
    cases = {
        "residual_forward": (n, lambda k: pk._residual_forward(out, x, y, n, k)),
        "gelu_forward (4C a position)": (4 * n, lambda k: pk._gelu_forward(out, x, 4 * n, k)),
        "layernorm_forward": (n, lambda k: pk._layernorm_forward(rows(out), mean.reshape(1, -1), rstd.reshape(1, -1),
                                                                 rows(x), w, b, 1, positions, C, k)),
        "fused_residual_forward": (n, lambda k: pk._fused_residual_forward(rows(out), rows(x), mean, rstd, rows(y),
                                                                           rows(x), w, b, positions, C, k)),
    }
    for name, (values, run) in cases.items():
        print(f"{name:<28}{values:>8}{median_us(lambda: run(1)):>11.2f}{median_us(lambda: run(K)):>9.2f}")
