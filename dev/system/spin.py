"""How long libgomp's workers spin before they sleep (GOMP_SPINCOUNT), for decode alone
and for two gpt processes at once on the same cores. Each setting runs in processes of
its own (libgomp reads the variable once, when it loads), interleaved. 300000 is
libgomp's own default where OMP_WAIT_POLICY is unset (the package sets its own where
GOMP_SPINCOUNT is unset: backends.load), 0 sleeps at once.

    python dev/system/spin.py [--model M] [--threads K] [--spins 300000,10000,1000,0] [--dtype fp32|bf16|int8|int4]
"""
import os, statistics, subprocess, sys, time
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs

args = devargs.parse(__doc__, [("--spins", dict(default="300000,10000,1000,0")), ("--worker", dict(default=None)),
                               ("--dtype", dict(default="fp32", choices=("fp32", "bf16", "int8", "int4")))])
if args.worker is not None:  # one process: median decode ms/token at context 16
    import numpy as np
    from gptpy import checkpoint, model
    ck = checkpoint.load_checkpoint(args.model, args.dtype); cfg = ck.config
    acts = model.Activations(cfg, 1, 17); inputs = (np.arange(17, dtype=np.int32) % cfg.vocab_size).reshape(1, -1)
    model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, 16, 0, True)
    ts = []
    for _ in range(40):
        t = time.perf_counter(); model.gpt2_forward(args.kernels, ck.params, cfg, acts, inputs, 1, 17, 16, True); ts.append(time.perf_counter() - t)
    print(statistics.median(ts[5:]))
    sys.exit()

def env(spin):
    return {**os.environ, "GOMP_SPINCOUNT": spin}

def decode(spin):
    out = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads), "--worker", "1",
                          "--dtype", args.dtype],
                         env=env(spin), capture_output=True, text=True, check=True).stdout
    return float(out)

def two_jobs(spin):
    gpt = [os.path.join(os.path.dirname(sys.executable), "gpt"), "--model", args.model, "--dtype", args.dtype, "-n", "64",
           "31373", "612"]
    t = time.perf_counter()
    procs = [subprocess.Popen(gpt, stdout=subprocess.DEVNULL, env=env(spin)) for _ in range(2)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t

spins = args.spins.split(",")
res = {s: [] for s in spins}
for _ in range(5):
    for s in spins:
        res[s].append(decode(s))
for s in spins:
    print(f"GOMP_SPINCOUNT={s:8s} decode at context 16: median {1e3 * statistics.median(res[s]):.2f} ms/token "
          f"{[round(1e3 * x, 2) for x in res[s]]}", flush=True)
for s in spins:
    print(f"GOMP_SPINCOUNT={s:8s} two gpt processes at once (62 tokens each): {two_jobs(s):.2f} s", flush=True)
