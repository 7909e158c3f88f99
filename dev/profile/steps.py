"""Per-step times of the gpt.c job (2 in, 8 out), three rounds: is the first pass special?

    python dev/profile/steps.py [--model M] [--threads K]
"""
import time
from gptpy import checkpoint
from gptpy.model import generate
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__)
threads, kernels = args.threads, args.kernels
ck = checkpoint.load_checkpoint(args.model)
for rnd in range(3):
    times = []; t0 = time.perf_counter()
    for tok in generate(kernels, ck, [31373, 612], 10):
        t1 = time.perf_counter(); times.append(t1 - t0); t0 = t1
    print(f"threads={threads} round {rnd}: " + " ".join(f"{1e3*t:.1f}" for t in times), f"| total {1e3*sum(times):.0f} ms")
