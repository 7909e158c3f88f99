"""Does the T = 1 matmul read a memory-mapped file (4 KB page-cache pages) slower than
anonymous memory, with or without huge pages? ms and GB/s on the LM head.

    python dev/system/pages.py [--model M] [--threads K]
"""
import mmap, time, numpy as np
from gptpy import checkpoint
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
args = devargs.parse(__doc__)
kernels = args.kernels
wte_map = checkpoint.load_checkpoint(args.model).params["wte"]
def anon(huge):
    buf = mmap.mmap(-1, wte_map.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge: buf.madvise(mmap.MADV_HUGEPAGE)
    a = np.frombuffer(buf, np.float32).reshape(wte_map.shape); a[:] = wte_map; return a
variants = {"file map": wte_map, "anon 4K": anon(False), "anon huge": anon(True), "np.array copy": np.array(wte_map)}
x = np.ones((1, 1, 768), np.float32); out = np.zeros((1, 1, 50304), np.float32)
for rnd in range(2):
    for name, w in variants.items():
        ts = []
        for _ in range(15):
            t0 = time.perf_counter(); kernels.matmul_forward(out, x, w, None, 1, 1, 768, 50304); ts.append(time.perf_counter() - t0)
        print(f"{name:14s} {1e3*np.median(ts):5.2f} ms {w.nbytes/np.median(ts)/1e9:5.1f} GB/s")
t0=time.perf_counter(); c = np.array(checkpoint.load_checkpoint(args.model).params["qkvw"]); print("copy 85MB", (time.perf_counter()-t0)*1e3, "ms")
