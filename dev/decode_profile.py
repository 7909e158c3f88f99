"""Per-kernel time of decode steps at a given context."""
import sys, numpy as np
import checkpoint, model
ctx = int(sys.argv[1])
ck = checkpoint.load_checkpoint("random_124M.bin"); cfg = ck.config
k = model.ProfiledKernels(model.load_backend("parallel", 2))
acts = model.Activations(cfg, 1, ctx + 1)
inputs = (np.arange(ctx + 1, dtype=np.int32) % 1000).reshape(1, -1)
model.gpt2_forward(k, ck.params, cfg, acts, inputs, 1, ctx, last_only=True)
k.first, k.rest, k.calls = {}, {}, {}
for _ in range(21):
    model.gpt2_forward(k, ck.params, cfg, acts, inputs, 1, ctx + 1, ctx, True)
print(k.report())
