"""Quick A/B timings of the jobs on the 124M shape: prefill T=64/256, recompute job, decode@16."""
import sys, time, statistics, numpy as np
import checkpoint, model
from gpt import generate
k = model.load_backend("parallel", int(sys.argv[2]) if len(sys.argv) > 2 else 2)
ck = checkpoint.load_checkpoint("random_124M.bin"); cfg = ck.config
def med(f, n):
    f(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)
acts = model.Activations(cfg, 1, 256); inp = np.arange(256, dtype=np.int32).reshape(1, -1)
r = {"prefill64": med(lambda: model.gpt2_forward(k, ck.params, cfg, acts, inp, 1, 64, 0, True), 5),
     "prefill256": med(lambda: model.gpt2_forward(k, ck.params, cfg, acts, inp, 1, 256, 0, True), 3),
     "recompute": med(lambda: list(generate(k, ck, [31373, 612], 10, True)), 5),
     "cache job": med(lambda: list(generate(k, ck, [31373, 612], 10, False)), 7)}
print(sys.argv[1] if len(sys.argv) > 1 else "", " ".join(f"{a} {b:.1f} ms" for a, b in r.items()))
