"""The sampler's cost per token against the model's: each combination of temperature,
top-k and top-p (and gpt.c's fixed coin) on a row of 50,257 logits, the compiled draw
(sampler._draw) beside the numpy definition it replaces (sampler.reshape's full sort
and a cumulative sum), on two shapes of distribution: logits of sd 3 (a confident
model) and of sd 0.5 (nearly flat, where top-p keeps most of the vocabulary). Medians
of interleaved rounds, in microseconds.

    python dev/sampling/sampler.py [--rounds R]
"""
import argparse

import numpy as np

from gptpy.sampler import Sampler, reshape
import sys as _sys, pathlib as _pathlib; _sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1]))  # dev/: devargs
import devargs  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--rounds", type=int, default=200)
args = parser.parse_args()

V = 50257
COMBINATIONS = {"coin": (None, None, None, None), "T 0.8": (0.8, None, None, 1), "top-k 40": (None, 40, None, 1),
                "top-p 0.95": (None, None, 0.95, 1), "T 0.8, k 40, p 0.95": (0.8, 40, 0.95, 1)}


def numpy_draw(probabilities, options, rng):
    temperature, top_k, top_p, _ = options
    p = reshape(probabilities[:V], temperature or 1.0, top_k or 0, top_p or 1.0)
    return min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), V - 1)


def median_us(f):
    return devargs.median_us(f, args.rounds)


rng = np.random.default_rng(0)
for sd in (3.0, 0.5):
    logits = (rng.standard_normal(50304) * sd).astype(np.float32)
    e = np.exp(logits - logits.max())
    probabilities = (e / e.sum()).astype(np.float32)
    for name, options in COMBINATIONS.items():
        sampler = Sampler(*options)
        compiled = median_us(lambda: sampler.next_token(probabilities, logits, V))
        line = f"logits sd {sd}: {name:22s} compiled {compiled:8.1f} us"
        if name != "coin":
            draw_rng = np.random.default_rng(1)
            line += f"   numpy (sort) {median_us(lambda: numpy_draw(probabilities, options, draw_rng)):8.1f} us"
        print(line)
