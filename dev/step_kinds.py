"""Why would decode steps inside generate() be slower than the decode benchmark?"""
import time, statistics, numpy as np
import checkpoint, model
from gpt import sample_mult
k = model.load_backend("parallel", 2)
ck = checkpoint.load_checkpoint("random_124M.bin"); cfg = ck.config; p = ck.params
acts = model.Activations(cfg, 1, 40); inp = (np.arange(40, dtype=np.int32) + 100).reshape(1, -1)
model.gpt2_forward(k, p, cfg, acts, inp, 1, 16, 0, True)
def run(kind, n=8):
    ts = []
    for j in range(n):
        T = 17 + j if kind.startswith("new") else 17
        t0 = time.perf_counter()
        probs = model.gpt2_forward(k, p, cfg, acts, inp, 1, T, T - 1, True)
        if kind.endswith("+sample"):
            sample_mult(probs[0, -1], cfg.vocab_size, 0.5)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
res = {k2: [] for k2 in ("same", "new", "same+sample", "new+sample")}
for _ in range(6):
    for kind in res:
        res[kind].append(run(kind))
for kind, v in res.items(): print(f"{kind:12s} {1e3*statistics.median(v):.1f} ms/step")
