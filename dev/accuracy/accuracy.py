"""How far bf16, int8 and int4 weights move the logits from fp32's: max |logit difference| and
the mean KL divergence KL(fp32 || dtype) of the next-token distribution, over every
position of a few prompts. Generated models hold bfloat16-exact values (there bf16 is exact), so the
weights here are perturbed by a relative 1e-3 first, off the bfloat16 grid: GPT-2-like
(the generator's scales) and lively (qkvw x8, fcw x32: attention and GELU off their flat
ranges), with the generator's confident final gain or without it.

On a CPU with AMX the parallel backend's prefill runs the bf16, int8 and int4 matmuls on
its tiles (parallel/amx.py); --without-amx measures its vector tiles instead.

    python dev/accuracy/accuracy.py [--threads K] [--layers L] [--without-amx]
"""
import os, tempfile
import numpy as np
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs
from gptpy import checkpoint, model, random_model

args = devargs.parse(__doc__, [("--layers", dict(type=int, default=12)),
                               ("--without-amx", dict(action="store_true", help="the vector tiles, not AMX's"))])
if args.without_amx:
    from gptpy.parallel import amx
    amx.AVAILABLE = False
DTYPES = ("bf16", "int8", "int4")
config = checkpoint.GPT2Config(1024, 50257, 50304, args.layers, 12, 768)
prompts = [np.random.default_rng(s).integers(0, 50257, 64).astype(np.int32) for s in range(3)]


def logits_of(path, dtype):
    ck = checkpoint.load_checkpoint(path, dtype)
    out = []
    for tokens in prompts:
        acts = model.Activations(config, 1, len(tokens))
        model.gpt2_forward(args.kernels, ck.params, config, acts, tokens[None], 1, len(tokens))
        out.append(acts.shaped(1, len(tokens), len(tokens))["logits"][0, :, :config.vocab_size].astype(np.float64))
    return np.concatenate(out)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


print(f"{'model':28s} {'logit sd':>9s}" + "".join(f" {d + ' max |dlogit|':>18s} {d + ' mean KL':>13s}" for d in DTYPES))
for lively in (False, True):
    for confident in (False, True):
        params = random_model.random_params(config, seed=1, confident=confident)
        rng = np.random.default_rng(2)
        for name in params:
            params[name] = params[name] * (1 + 1e-3 * rng.standard_normal(params[name].shape, dtype=np.float32))
        if lively:
            params["qkvw"] *= 8
            params["fcw"] *= 32
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "m.bin")
            checkpoint.write_checkpoint(path, config, params, 3)
            fp32 = logits_of(path, "fp32")
            others = {d: logits_of(path, d) for d in DTYPES}
        label = ("lively" if lively else "GPT-2-like") + (", confident" if confident else "")
        line = f"{label:28s} {fp32.std():9.2f}"
        for d, logits in others.items():
            p, q = log_softmax(fp32), log_softmax(logits)
            kl = (np.exp(p) * (p - q)).sum(-1).mean()
            line += f" {np.abs(fp32 - logits).max():18.4f} {kl:13.2e}"
        print(line, flush=True)
