"""Per-kernel time (model.ProfiledKernels) of three recompute jobs (the gpt.c job,
--recompute), after one to warm up.

    python dev/recompute_profile.py [--model M] [--threads K]
"""
from gptpy import checkpoint, model
from gptpy.model import generate
import devargs
args = devargs.parse(__doc__)
K = args.threads
ck = checkpoint.load_checkpoint(args.model)
k = model.ProfiledKernels(args.kernels)
list(generate(k, ck, [31373, 612], 10, True))
k.first, k.rest, k.calls = {}, {}, {}
for _ in range(3):
    list(generate(k, ck, [31373, 612], 10, True))
print(f"K={K}, 3 jobs"); print(k.report())
