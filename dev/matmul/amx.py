"""On a host with Intel AMX, what do prefill's matmuls gain on its tiles
(parallel.kernels._matmul_amx), and what do they lose in accuracy? The package's
matmul_forward for prefill's four matmuls of 12 layers, each weight type the AMX path
takes (bf16, int8, int4), with AMX at every T (its thresholds, the
AMX_MIN_POSITIONS_* of parallel/kernels.py, set to 1) and without (amx.AVAILABLE turned
off: the vector tiles), timed round by round in turn at each T; medians of the rounds;
and layer 0's fc matmul's largest difference from the float64 product of the same
weight's values, as a fraction of the largest output. The thresholds are where the
speed-up crosses 1. Last, why int8's values go to the tiles as two bfloat16s and int4's
as one: how much rounding each to one bfloat16 would add to the rms error that the
weight's own quantization makes in layer 0's fc (its product against float32 weights).

    python dev/matmul/amx.py [--model M] [--threads K] [--rounds R] [--positions 4,16,64,512]
"""
import statistics
import time

import numpy as np

import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

DTYPES = ("bf16", "int8", "int4")
MATMULS = (("qkvw", "qkvb", 1, 3), ("attprojw", "attprojb", 1, 1), ("fcw", "fcb", 1, 4), ("fcprojw", "fcprojb", 4, 1))


def _positions(text):
    """An argparse type: comma-separated whole numbers from 1 (each as devargs.at_least_one)."""
    return [devargs.at_least_one(t) for t in text.split(",")]


def main():
    args = devargs.parse(__doc__, [
        ("--rounds", dict(type=devargs.at_least_one, default=7, help="timed rounds (default: 7)")),
        ("--positions", dict(type=_positions, default="4,16,64,512",
                             help="the T to time, comma-separated (default: 4,16,64,512)"))])
    from gptpy.checkpoint import load_checkpoint
    from gptpy.parallel import amx
    from gptpy.parallel import kernels as parallel
    parallel.AMX_MIN_POSITIONS_BF16 = parallel.AMX_MIN_POSITIONS_INT = 1
    if not amx.AVAILABLE:
        raise SystemExit("dev/matmul/amx.py: no AMX here (or numba compiles for a CPU without it)")
    kernels = args.kernels
    rng = np.random.default_rng(0)
    print(f"K = {args.threads}, medians of {args.rounds} rounds, ms for 12 layers' four matmuls")
    print("| dtype | T | AMX ms | vector tiles ms | speed-up | AMX error | tiles error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for dtype in DTYPES:
        ckpt = load_checkpoint(args.model, dtype)
        p, C, L = ckpt.params, ckpt.config.channels, ckpt.config.num_layers
        for T in args.positions:
            x = {n: rng.standard_normal((1, T, n * C), dtype=np.float32) for n in (1, 4)}
            y = {n: np.empty((1, T, n * C), np.float32) for n in (1, 3, 4)}

            def run():
                for l in range(L):
                    for w, b, c_in, c_out in MATMULS:
                        kernels.matmul_forward(y[c_out], x[c_in], p[w][l], p[b][l], 1, T, c_in * C, c_out * C)

            def fc_output():
                """Layer 0's fc matmul, for its error."""
                out = np.empty((1, T, 4 * C), np.float32)
                kernels.matmul_forward(out, x[1], p["fcw"][0], p["fcb"][0], 1, T, C, 4 * C)
                return out

            times = {True: [], False: []}
            outs = {}
            for on in (True, False):
                amx.AVAILABLE = on
                run()
                outs[on] = fc_output()
            for _ in range(args.rounds):
                for on in (True, False):
                    amx.AVAILABLE = on
                    start = time.perf_counter()
                    run()
                    times[on].append(time.perf_counter() - start)
            amx.AVAILABLE = True
            reference = _float64_fc(p, x[1], C)
            scale = np.abs(reference).max()
            err = {on: np.abs(outs[on] - reference).max() / scale for on in (True, False)}
            a, v = (1e3 * statistics.median(times[on]) for on in (True, False))
            print(f"| {dtype} | {T} | {a:.2f} | {v:.2f} | {v / a:.2f}x | {err[True]:.1e} | {err[False]:.1e} |", flush=True)
    _rounding_cost(args.model)


def _rounding_cost(model):
    """For int8 and int4: the rms error of layer 0's fc product against float32's, with
    the weight's values as they are and rounded to one bfloat16 (nearest)."""
    from gptpy.checkpoint import load_checkpoint
    fp32 = load_checkpoint(model, "fp32").params
    x = np.random.default_rng(1).standard_normal((64, fp32["fcw"][0].shape[1]))
    exact = x @ np.asarray(fp32["fcw"][0], np.float64).T
    for dtype in ("int8", "int4"):
        p = load_checkpoint(model, dtype).params
        values = _dense(p["fcw"][0], x.shape[1])
        bits = values.astype(np.float32).view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32).astype(np.float64)
        own, with_bf16 = (np.sqrt(((x @ v.T - exact) ** 2).mean()) for v in (values, rounded))
        print(f"{dtype}: its own rounding's rms error {own:.3e}; with its values rounded to bfloat16 "
              f"{with_bf16:.3e} ({100 * (with_bf16 / own - 1):+.2f}%)")


def _dense(weight, C):
    """A weight's values as the serial kernels read them, float64 (OC, C)."""
    from gptpy.serial.kernels import matmul_forward as serial_matmul
    OC = weight[0].shape[0] if isinstance(weight, tuple) else weight.shape[0]
    dense = np.empty((1, C, OC), np.float32)  # row c: the weight's column c, exactly (one product with 1)
    serial_matmul(dense, np.eye(C, dtype=np.float32)[None], weight, None, 1, C, C, OC)
    return dense[0].T.astype(np.float64)


def _float64_fc(p, x, C):
    """Layer 0's fc matmul in float64, from the weight's own values (weight_at's)."""
    return x.astype(np.float64) @ _dense(p["fcw"][0], C).T + p["fcb"][0].astype(np.float64)


if __name__ == "__main__":
    main()
