"""Per-kernel time (model.ProfiledKernels) of three recompute jobs (the gpt.c job,
--recompute), after one to warm up.

    python dev/profile/recompute.py [--model M] [--threads K]
"""
from gptpy import checkpoint, model
from gptpy.model import generate
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__)
K = args.threads
ck = checkpoint.load_checkpoint(args.model)
k = model.ProfiledKernels(args.kernels)
list(generate(k, ck, [31373, 612], 10, True))
k = model.ProfiledKernels(args.kernels)  # afresh: the warm-up's steps out of the step report too
for _ in range(3):
    list(generate(k, ck, [31373, 612], 10, True))
print(f"K={K}, 3 jobs"); print(k.report())
