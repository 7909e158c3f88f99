"""A/B, interleaved: the gpt.c job with an older parallel/kernels.py's public kernels
against the current ones (e.g. `git show REV:parallel/kernels.py > /tmp/kernels_old.py`).

    python dev/job_ab.py OLD_KERNELS_PY [--model M] [--threads K]
"""
import importlib.util, time, statistics
from gptpy import checkpoint
from gptpy.model import generate
import devargs
args = devargs.parse(__doc__, [("old", dict(help="an older parallel/kernels.py"))])
spec = importlib.util.spec_from_file_location("kernels_old", args.old); old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
new = args.kernels
ck = checkpoint.load_checkpoint(args.model)
res = {"old": [], "new": []}
for k in (old, new): list(generate(k, ck, [31373, 612], 10))
for _ in range(9):
    for name, k in (("old", old), ("new", new)):
        t0 = time.perf_counter(); list(generate(k, ck, [31373, 612], 10)); res[name].append(time.perf_counter() - t0)
for name, v in res.items(): print(f"{name}: median {1e3*statistics.median(v):.1f} ms  min {1e3*min(v):.1f}")
