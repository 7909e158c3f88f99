"""Prefill's matmul at a few positions (T = 4 to 16: short prompts, the gpt.c job's
recompute steps), where the tiles wait on memory, and at 64: matmul_forward (the last
2 or 3 positions a tile that overlaps the one before, _tiled_positions; each block of
float32 rows read once in order before its tiles, _read_in_order) against the loop
before both (the last T % 4 positions one dot product at a time, the rows read by the
tiles, CH streams at once) and against matmul_forward without the read in order. On a
step's matmuls: every layer's four and the LM head, the weights streamed from memory as
in a forward pass. Interleaved, medians; GB/s of weights read.

    python dev/matmul/few_positions.py [--model M] [--threads K] [--dtype fp32|bf16]
"""
import statistics
import time

import numpy as np
from numba import njit, prange

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy.checkpoint import load_checkpoint
from gptpy.parallel.kernels import TILE_CHANNELS, _dot_rows, _tile_row_bytes, _tile_x4, _tiled_positions, block_rows, chunk

args = devargs.parse(__doc__, [("--dtype", dict(default="fp32", choices=("fp32", "bf16")))])
K = args.threads


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def without_reading_in_order(out, inp, weight, bias, B, T, C, OC, K, overlap, OB, CH=TILE_CHANNELS):
    """matmul_forward without _read_in_order: each block's rows come from memory as the
    tiles read them, CH rows at once; with `overlap` False, as before both changes (the
    last T % 4 positions one dot product at a time)."""
    for w in prange(K):
        lo, hi = chunk(OC, K, w)
        tiles_end = lo + (hi - lo) // CH * CH
        tiled = _tiled_positions(T) if overlap else T // 4 * 4
        for b in range(B):
            for ob in range(lo, tiles_end, OB // CH * CH):
                oe = min(ob + OB // CH * CH, tiles_end)
                for t4 in range(0, tiled, 4):
                    t = min(t4, T - 4)  # below T - 4 unless the last tile overlaps
                    for o in range(ob, oe, CH):
                        _tile_x4(out, inp, weight, bias, b, o, o, t, C, CH)
                for o in range(ob, oe):
                    _dot_rows(out, inp, weight, bias, b, o, o, tiled, T, C)
            for o in range(tiles_end, hi):
                _dot_rows(out, inp, weight, bias, b, o, o, 0, T, C)


ckpt = load_checkpoint(args.model, args.dtype)
p, config = ckpt.params, ckpt.config
C, L, Vp = config.channels, config.num_layers, config.padded_vocab_size
shapes = [(p[name][l], p[name.replace("w", "b")][l], c, oc) for l in range(L)
          for name, c, oc in (("qkvw", C, 3 * C), ("attprojw", C, C), ("fcw", C, 4 * C), ("fcprojw", 4 * C, C))]
shapes.append((p["wte"], None, C, Vp))
nbytes = sum(w.nbytes for w, _, _, _ in shapes)
rng = np.random.default_rng(0)
rows = lambda weight, C: block_rows(_tile_row_bytes(weight, C))  # noqa: E731  (matmul_forward's blocks)
variants = {"before": lambda *a: without_reading_in_order(*a, K, False, rows(a[2], a[6])),
            "matmul_forward": args.kernels.matmul_forward,
            "without reading in order": lambda *a: without_reading_in_order(*a, K, True, rows(a[2], a[6]))}
print(f"{args.dtype}, K = {K}, {nbytes / 1e6:.0f} MB of weights a step; GB/s (ms)")
for T in (4, 5, 6, 7, 9, 16, 64):
    inputs = {c: rng.standard_normal((1, T, c), dtype=np.float32) for c in (C, 4 * C)}
    outs = {oc: np.empty((1, T, oc), np.float32) for oc in (C, 3 * C, 4 * C, Vp)}
    results = {}
    for name, f in variants.items():
        for w, b, c, oc in shapes:
            f(outs[oc], inputs[c], w, b, 1, T, c, oc)
        results[name] = outs[Vp].copy()
    assert np.allclose(results["matmul_forward"], results["before"], rtol=1e-4, atol=1e-4)
    times = {name: [] for name in variants}
    for _ in range(11):
        for name, f in variants.items():
            start = time.perf_counter()
            for w, b, c, oc in shapes:
                f(outs[oc], inputs[c], w, b, 1, T, c, oc)
            times[name].append(time.perf_counter() - start)
    cells = [f"{name} {nbytes / statistics.median(t) / 1e9:5.1f} ({1e3 * statistics.median(t):5.2f})"
             for name, t in times.items()]
    print(f"T = {T}: " + "   ".join(cells), flush=True)
