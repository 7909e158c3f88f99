"""A/B, interleaved: the gpt.c job with an older parallel/kernels.py against the current one."""
import importlib.util, sys, time, statistics, types
import checkpoint, model, parallel
from gpt import generate
spec = importlib.util.spec_from_file_location("kernels_old", sys.argv[1]); old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
new = model.load_backend("parallel", 2)
ck = checkpoint.load_checkpoint("random_124M.bin")
res = {"old": [], "new": []}
for k in (old, new): list(generate(k, ck, [31373, 612], 10))
for _ in range(9):
    for name, k in (("old", old), ("new", new)):
        t0 = time.perf_counter(); list(generate(k, ck, [31373, 612], 10)); res[name].append(time.perf_counter() - t0)
for name, v in res.items(): print(f"{name}: median {1e3*statistics.median(v):.1f} ms  min {1e3*min(v):.1f}")
