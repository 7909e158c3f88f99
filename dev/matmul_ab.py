"""A/B, interleaved: an older parallel/kernels.py's public matmul_forward (e.g. from
`git show REV:parallel/kernels.py > /tmp/old/kernels_old.py`) against the current one,
on the LM head and fc weights at T = 1, 2, 5, 9, 64.

    python dev/matmul_ab.py OLD_KERNELS_PY [--model M] [--threads K]
"""
import importlib.util, time, numpy as np
from gptpy import checkpoint
import devargs
args = devargs.parse(__doc__, [("old", dict(help="an older parallel/kernels.py"))])
after = args.kernels.matmul_forward
spec = importlib.util.spec_from_file_location("before", args.old); mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
before = mod.matmul_forward
p = checkpoint.load_checkpoint(args.model).params
rng = np.random.default_rng(0)
for T in (1, 2, 5, 9, 64):
    for name, w, bias in (("lm", p["wte"], None), ("fc", p["fcw"][0], p["fcb"][0])):
        OC, C = w.shape
        x = rng.standard_normal((1, T, C), dtype=np.float32); o1 = np.zeros((1, T, OC), np.float32); o2 = o1.copy()
        res = {"before": [], "after": []}
        for f, o in ((before, o1), (after, o2)): f(o, x, w, bias, 1, T, C, OC)
        assert np.allclose(o1, o2, atol=1e-4)
        for _ in range(7 if T < 64 else 3):
            for name2, f, o in (("before", before, o1), ("after", after, o2)):
                t0 = time.perf_counter(); f(o, x, w, bias, 1, T, C, OC); res[name2].append(time.perf_counter() - t0)
        b, a = np.median(res["before"]), np.median(res["after"])
        print(f"T={T:2d} {name:3s} before {1e3*b:8.3f} ms  after {1e3*a:8.3f} ms  {2*T*C*OC/a/1e9:6.1f} GF  speed-up {b/a:.2f}")
