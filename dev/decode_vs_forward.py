"""Interleaved: a T=1 forward from scratch against a decode step at context 16 and 512."""
import time, statistics, numpy as np
import checkpoint, model
k = model.load_backend("parallel", 2)
ck = checkpoint.load_checkpoint("random_124M.bin"); cfg = ck.config; p = ck.params
inp = (np.arange(513, dtype=np.int32) + 100).reshape(1, -1)
a1 = model.Activations(cfg, 1, 1); a17 = model.Activations(cfg, 1, 17); a513 = model.Activations(cfg, 1, 513)
model.gpt2_forward(k, p, cfg, a17, inp, 1, 16, 0, True); model.gpt2_forward(k, p, cfg, a513, inp, 1, 512, 0, True)
cases = {"forward T=1": lambda: model.gpt2_forward(k, p, cfg, a1, inp, 1, 1),
         "decode @16": lambda: model.gpt2_forward(k, p, cfg, a17, inp, 1, 17, 16, True),
         "decode @512": lambda: model.gpt2_forward(k, p, cfg, a513, inp, 1, 513, 512, True)}
for f in cases.values(): f()
res = {c: [] for c in cases}
for _ in range(15):
    for c, f in cases.items():
        t0 = time.perf_counter(); f(); res[c].append(time.perf_counter() - t0)
for c, v in res.items(): print(f"{c:12s} {1e3*statistics.median(v):.1f} ms")
