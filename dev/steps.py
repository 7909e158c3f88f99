"""Per-step times of the gpt.c job (2 in, 8 out) on the 124M shape: is the first pass special?"""
import sys, time
import numpy as np
import checkpoint, model
from gpt import generate
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
kernels = model.load_backend("parallel", threads)
ck = checkpoint.load_checkpoint("random_124M.bin")
for rnd in range(3):
    times = []; t0 = time.perf_counter()
    for tok in generate(kernels, ck, [31373, 612], 10):
        t1 = time.perf_counter(); times.append(t1 - t0); t0 = t1
    print(f"threads={threads} round {rnd}: " + " ".join(f"{1e3*t:.1f}" for t in times), f"| total {1e3*sum(times):.0f} ms")
