"""Per-kernel time (model.ProfiledKernels) of 21 decode steps at a given context.

    python dev/profile/decode.py CONTEXT [--model M] [--threads K] [--dtype fp32|bf16|int8]
"""
import numpy as np
from gptpy import checkpoint, model
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__, [("context", dict(type=int)), ("--dtype", dict(choices=("fp32", "bf16", "int8", "int4")))])
ctx = args.context
ck = checkpoint.load_checkpoint(args.model, args.dtype); cfg = ck.config
k = model.ProfiledKernels(args.kernels)
acts = model.Activations(cfg, 1, ctx + 1)
inputs = (np.arange(ctx + 1, dtype=np.int32) % 1000).reshape(1, -1)
model.gpt2_forward(k, ck.params, cfg, acts, inputs, 1, ctx, last_only=True)
k.first, k.rest, k.calls = {}, {}, {}
for _ in range(21):
    model.gpt2_forward(k, ck.params, cfg, acts, inputs, 1, ctx + 1, ctx, True)
print(k.report())
