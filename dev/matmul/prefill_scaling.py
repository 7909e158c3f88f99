"""Why prefill's matmul scales from 1 to K workers less than the cores' FMA does: each
question timed with 1 worker and with K, round by round (numba's pool resized in this
process), each speed-up the median of the rounds' own ratios; T = 64, float32.

1. The same matmul (C = 768) on weights of 0.4 MB (in L2) to 113 MB (streamed from
   memory): does the speed-up fall as the weights leave the caches?
2. On the 113 MB weights: the next block's rows prefetched (llvm.prefetch, locality 1 to
   3) a few lines after each tile of the block before, spread over its tiles, with or
   without matmul_forward's read in order of each block: does the read overlap the
   tiles' arithmetic?
3. The blocks' rows (64 for every matmul before parallel.kernels.block_rows sized them
   from the L2): 64, 32 or 16 on each layer's four matmuls of the 124M model, 12 layers
   streamed.
4. The LM head at the last position only (prefill's: 154 MB of float32 read for one
   position, matmul_forward's T = 1 path): how much of a prefill does not scale?
5. Staggered blocks: worker w's first block w/K shorter, so that the workers, which
   start each matmul together, read their blocks (before the tiles) while the others
   compute instead of all at once; each layer's four matmuls, 12 layers of weights.
6. Blocks claimed from a shared counter (an atomic add) instead of K fixed chunks, so
   that a worker the host slows does fewer of them: how long does a worker wait for the
   other at each matmul's end (its busy time over the region's, from the cycle counter),
   and is the matmul faster?

    python dev/matmul/prefill_scaling.py [--model M] [--threads K]
"""
import statistics
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__)
from gptpy.checkpoint import load_checkpoint  # noqa: E402
from gptpy.parallel import set_workers  # noqa: E402
from gptpy.parallel.kernels import TILE_CHANNELS, block_rows, _dot_rows, _read_in_order, _tile_x4, _tiled_positions, chunk  # noqa: E402

K, T, ROUNDS = args.threads, 64, 7
OB = block_rows(4 * 768)  # matmul_forward's rows a block at C = 768 (64 on a 1 MB L2)


def prefetcher(locality):
    """An intrinsic that prefetches array[index]'s line with this locality (0 to 3)."""
    @intrinsic
    def prefetch(typingctx, array, index):
        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [index])
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(pointer, i8p), ir.Constant(i32, 0), ir.Constant(i32, locality),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return types.void(array, index), codegen
    return prefetch


def blocked(locality=None, read_every_block=True, stagger=False):
    """matmul_forward's loops with the block's rows a run-time argument and, with a
    locality, the next block's lines prefetched after each tile, spread over the block's
    tiles (its read in order then for every block, or for the first only); with
    `stagger`, worker w's first block w/K of a block shorter (whole tiles, at least one)."""
    prefetch = prefetcher(locality if locality is not None else 0)
    ahead = locality is not None

    @njit(parallel=True, fastmath=True, error_model="numpy")
    def matmul(out, inp, weight, bias, B, T, C, OC, K, rows, CH=TILE_CHANNELS):
        sink = np.zeros(K, np.float32)
        flat = weight.reshape(weight.size)
        step = rows // CH * CH
        for w in prange(K):
            lo, hi = chunk(OC, K, w)
            tiles_end = lo + (hi - lo) // CH * CH
            tiled = _tiled_positions(T)
            total = np.float32(0.0)
            first = max(CH, step - (w * step // K) // CH * CH) if stagger else step
            for b in range(B):
                ob, oe = lo, min(lo + first, tiles_end)
                while ob < tiles_end:
                    if read_every_block or ob == lo:
                        total += _read_in_order(weight, ob, oe, C)
                    at, end = oe * C, min(oe + step, tiles_end) * C  # the next block's values
                    tiles = max((oe - ob) // CH * ((tiled + 3) // 4), 1)
                    per_tile = ((end - at) // 16 + tiles - 1) // tiles if ahead else 0
                    for t4 in range(0, tiled, 4):
                        t = min(t4, T - 4)
                        for o in range(ob, oe, CH):
                            _tile_x4(out, inp, weight, bias, b, o, o, t, C, CH)
                            for _ in range(per_tile):
                                if at < end:
                                    prefetch(flat, at)
                                at += 16
                    for o in range(ob, oe):
                        _dot_rows(out, inp, weight, bias, b, o, o, tiled, T, C)
                    ob, oe = oe, min(oe + step, tiles_end)
                for o in range(tiles_end, hi):
                    _dot_rows(out, inp, weight, bias, b, o, o, 0, T, C)
            sink[w] = total
        return sink
    return matmul


@intrinsic
def cycles(typingctx):
    """The CPU's time-stamp counter (llvm.readcyclecounter: rdtsc)."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def claim(typingctx, counter):
    """counter[0] += 1, atomically; its value before (a block's number, each given once)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")
    return types.int64(counter), codegen


def timed(claimed):
    """matmul_forward's loops (B = 1), each worker's first and last cycle in stamps[w];
    with `claimed`, blocks of the same rows taken from a shared counter instead of the
    worker's chunk: which worker computes a block changes, what it computes does not."""
    @njit(parallel=True, fastmath=True, error_model="numpy")
    def matmul(out, inp, weight, bias, T, C, OC, K, rows, stamps, CH=TILE_CHANNELS):
        sink = np.zeros(K, np.float32)
        step = rows // CH * CH
        counter = np.zeros(1, np.int64)
        tiled = _tiled_positions(T)
        for w in prange(K):
            stamps[w, 0] = cycles()
            lo, hi = (0, OC) if claimed else chunk(OC, K, w)
            tiles_end = lo + (hi - lo) // CH * CH
            ob = claim(counter) * step if claimed else lo
            while ob < tiles_end:
                oe = min(ob + step, tiles_end)
                sink[w] += _read_in_order(weight, ob, oe, C)
                for t4 in range(0, tiled, 4):
                    t = min(t4, T - 4)
                    for o in range(ob, oe, CH):
                        _tile_x4(out, inp, weight, bias, 0, o, o, t, C, CH)
                for o in range(ob, oe):
                    _dot_rows(out, inp, weight, bias, 0, o, o, tiled, T, C)
                ob = claim(counter) * step if claimed else oe
            if not claimed or ob == (tiles_end + step - 1) // step * step:  # the last channels: the one
                # worker whose claim was the first past the blocks
                for o in range(tiles_end, hi):
                    _dot_rows(out, inp, weight, bias, 0, o, o, 0, T, C)
            stamps[w, 1] = cycles()
        return sink
    return matmul


def use(k):
    numba.set_num_threads(k)
    set_workers(k)


def speedups(variants):
    """{name: (rate with 1 worker, rate with K, the median of the rounds' ratios)} for
    variants {name: (a function of k, its work)}."""
    for k in (1, K):
        use(k)
        for f, _ in variants.values():
            f(k)
    times = {name: {1: [], K: []} for name in variants}
    for r in range(ROUNDS):
        for k in ((1, K) if r % 2 == 0 else (K, 1)):
            use(k)
            for name, (f, _) in variants.items():
                start = time.perf_counter()
                f(k)
                times[name][k].append(time.perf_counter() - start)
    return {name: (work / statistics.median(times[name][1]), work / statistics.median(times[name][K]),
                   statistics.median(a / b for a, b in zip(times[name][1], times[name][K])))
            for name, (_, work) in variants.items()}


def report(title, results, unit="GFLOP/s", scale=1e-9):
    print(title)
    for name, (one, many, ratio) in results.items():
        print(f"  {name:34} {scale * one:7.0f} -> {scale * many:7.0f} {unit}: {ratio:.2f}x", flush=True)


rng = np.random.default_rng(0)
C = 768
x = rng.standard_normal((1, T, C), dtype=np.float32)
plain = blocked()
variants = {}
for OC in (128, 2304, 9216, 36864):
    w, bias, out = rng.standard_normal((OC, C), dtype=np.float32), np.zeros(OC, np.float32), np.empty((1, T, OC), np.float32)
    reps = max(1, 36864 // OC // 2)
    variants[f"{w.nbytes / 1e6:5.1f} MB of weights"] = (
        lambda k, w=w, bias=bias, out=out, OC=OC, reps=reps: [plain(out, x, w, bias, 1, T, C, OC, k, OB) for _ in range(reps)],
        2 * C * OC * T * reps)
report(f"1. the speed-up with the weights' size (T = {T}, C = {C}), 1 -> {K} workers", speedups(variants))

variants = {"matmul_forward's loops": (lambda k: plain(out, x, w, bias, 1, T, C, OC, k, OB), 2 * C * OC * T)}
for locality in (1, 2, 3):
    for every in (True, False):
        f = blocked(locality, every)
        variants[f"prefetched, locality {locality}, read {'every block' if every else 'the first'}"] = (
            lambda k, f=f: f(out, x, w, bias, 1, T, C, OC, k, OB), 2 * C * OC * T)
report(f"2. the next block prefetched over the tiles ({w.nbytes / 1e6:.0f} MB streamed)", speedups(variants))

ckpt = load_checkpoint(args.model, "fp32")
p, L = ckpt.params, ckpt.config.num_layers
MATMULS = (("qkvw", C, 3 * C), ("attprojw", C, C), ("fcw", C, 4 * C), ("fcprojw", 4 * C, C))
inps = {m: rng.standard_normal((1, T, c), dtype=np.float32) for m, c, _ in MATMULS}
outs = {m: np.empty((1, T, oc), np.float32) for m, _, oc in MATMULS}
variants = {}
for name, c, oc in MATMULS:
    inp, out = inps[name], outs[name]
    for rows in (64, 32, 16):
        variants[f"{name} ({c} -> {oc}), {rows} rows a block"] = (
            lambda k, name=name, c=c, oc=oc, inp=inp, out=out, rows=rows:
                [plain(out, inp, p[name][l], p[name.replace("w", "b")][l], 1, T, c, oc, k, rows) for l in range(L)],
            2 * c * oc * T * L)
report(f"3. the rows of a block, {L} layers streamed", speedups(variants))

wte, x1, logits = p["wte"], rng.standard_normal((1, 1, C), dtype=np.float32), np.empty((1, 1, p["wte"].shape[0]), np.float32)
results = speedups({"the LM head, one position": (
    lambda k: args.kernels.matmul_forward(logits, x1, wte, None, 1, 1, C, wte.shape[0]), wte.nbytes)})
report("4. the LM head at one position", results, unit="GB/s of weights", scale=1e-9)
for name, (one, many, _) in results.items():
    print(f"  {name}: {1e3 * wte.nbytes / one:.2f} ms with 1 worker, {1e3 * wte.nbytes / many:.2f} with {K}")

staggered = blocked(stagger=True)
variants = {}
for name, f in (("matmul_forward's loops", plain), ("staggered first blocks", staggered)):
    variants[name] = (lambda k, f=f: [f(outs[m], inps[m], p[m][l], p[m.replace("w", "b")][l], 1, T, c, oc, k, block_rows(4 * c))
                                      for l in range(L) for m, c, oc in MATMULS], sum(2 * c * oc * T * L for _, c, oc in MATMULS))
report(f"5. staggered first blocks, each layer's four matmuls, {L} layers streamed", speedups(variants))

stamps, waits = np.zeros((K, 2), np.int64), {}


def layers(f, name, k):
    """The 12 layers' four matmuls by f with k workers; their busy cycles and the regions'
    added up."""
    busy = waits.setdefault((name, k), [0, 0])
    for l in range(L):
        for m, c, oc in MATMULS:
            f(outs[m], inps[m], p[m][l], p[m.replace("w", "b")][l], T, c, oc, k, block_rows(4 * c), stamps)
            busy[0] += (stamps[:k, 1] - stamps[:k, 0]).mean()
            busy[1] += stamps[:k, 1].max() - stamps[:k, 0].min()


variants = {}
for name, f in (("K fixed chunks", timed(False)), ("blocks claimed from a counter", timed(True))):
    variants[name] = (lambda k, f=f, name=name: layers(f, name, k), sum(2 * c * oc * T * L for _, c, oc in MATMULS))
report(f"6. blocks claimed from a counter, each layer's four matmuls, {L} layers streamed", speedups(variants))
for name in variants:
    busy, span = waits[name, K]
    print(f"  {name}: with {K} workers a worker is busy {100 * busy / span:.1f}% of each region (the rest waits)")
