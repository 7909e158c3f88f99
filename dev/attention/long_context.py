"""Decode at long context: ms per token at contexts 16, 512 and 1000 for each weight type
with the KV cache in float32 and in bfloat16 (--kv-dtype), medians of interleaved rounds
(each round one step of every weight type and cache at every context, so that the weight
types' ratios are side by side too), and each context's cost over context 16's.

    python dev/attention/long_context.py [--model M] [--threads K] [--dtypes int8,int4] [--rounds 15]
"""
import statistics
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy import checkpoint, model

args = devargs.parse(__doc__, [("--dtypes", dict(default="int8,int4")), ("--rounds", dict(type=int, default=15)),
                               ("--contexts", dict(default="16,512,1000"))])
contexts = [int(c) for c in args.contexts.split(",")]
print(f"{'weights':8}{'KV cache':>9}" + "".join(f"{'ctx ' + str(c) + ' ms':>13}" for c in contexts)
      + "".join(f"{'x ctx ' + str(c):>11}" for c in contexts[1:]))
runs = {}  # (dtype, kv): (checkpoint, activations with a full cache)
for dtype in args.dtypes.split(","):
    ck = checkpoint.load_checkpoint(args.model, dtype)
    cfg = ck.config
    inputs = (np.arange(max(contexts) + 1, dtype=np.int32) % cfg.vocab_size).reshape(1, -1)
    for kv in ("fp32", "bf16"):
        acts = model.Activations(cfg, 1, max(contexts) + 1, all_logits=False, kv_dtype=kv)
        model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, max(contexts), last_only=True)  # fills the cache
        runs[dtype, kv] = ck, acts
times = {(run, c): [] for run in runs for c in contexts}
for _ in range(args.rounds):  # every weight type, cache and context once a round: their ratios side by side
    for (ck, acts), run in zip(runs.values(), runs):
        for c in contexts:  # position c against the c cached before it
            start = time.perf_counter()
            model.gpt2_forward(args.kernels, ck.params, ck.config, acts, inputs, 1, c + 1, c, True)
            times[run, c].append(1e3 * (time.perf_counter() - start))
for dtype, kv in runs:
    ms = {c: statistics.median(times[(dtype, kv), c]) for c in contexts}
    print(f"{dtype:8}{kv:>9}" + "".join(f"{ms[c]:13.2f}" for c in contexts)
          + "".join(f"{ms[c] / ms[contexts[0]]:11.2f}" for c in contexts[1:]))
