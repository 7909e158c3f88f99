"""Scoring a text: each token's log-probability under the model given the tokens before
it, and how far one precision's next-token distributions are from another's.

The text is cut into non-overlapping windows of the model's context, as llama.cpp's
llama-perplexity cuts it; each window runs through the model once with logits at every
position, and every token of it but the first is scored (the first has nothing before
it in its window). Log-softmax, KL divergence and top-1 are computed in float64 from
the float32 logits, a few rows at a time, so that memory holds one window's logits.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from .model import Activations, gpt2_forward

ROWS = 64  # logits rows turned into float64 log-probabilities at a time


def windows(n, context):
    """[(start, end)] of non-overlapping windows of at most `context` tokens over n tokens,
    leaving out a last window of one token (it scores nothing)."""
    return [(start, min(start + context, n)) for start in range(0, n, context) if min(start + context, n) - start > 1]


def log_softmax(logits):
    """float64 log-probabilities of rows of logits."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class Scores:
    """What scoring found: the summed negative log-likelihood of the scored tokens and
    their number; against another precision, each scored position's KL divergence
    (the other's distribution as the reference, KL(other || this)) and how many had
    the same most probable token."""
    nll: float = 0.0
    scored: int = 0
    kl: list = field(default_factory=list)
    same_top1: int = 0

    @property
    def perplexity(self):
        return math.exp(self.nll / self.scored)


def score(kernels, checkpoint, ids, reference=None, done=None, kv_dtype="fp32", reference_kv_dtype="fp32"):
    """Scores the token ids (a sequence of ints, each below the model's vocabulary) with
    `checkpoint`'s model on `kernels`, its KV cache in `kv_dtype`; with `reference` (the
    same model in another precision, its cache in `reference_kv_dtype`), also the KL
    divergence and top-1 agreement against it. done(tokens) is called after each window."""
    config = checkpoint.config
    V, context = config.vocab_size, config.max_seq_len
    ids = np.asarray(ids, dtype=np.int32)
    acts = Activations(config, 1, context, kv_dtype=kv_dtype)
    # a second set of buffers only where the reference's cache is of another type
    reference_acts = acts if reference is None or reference_kv_dtype == kv_dtype else \
        Activations(config, 1, context, kv_dtype=reference_kv_dtype)
    scores = Scores()
    for start, end in windows(len(ids), context):
        inputs, T = ids[None, start:end], end - start
        other = None
        if reference is not None:
            probs = gpt2_forward(kernels, reference.params, config, reference_acts, inputs, 1, T)
            other = reference_acts.logits_of(probs)[0, :T - 1, :V].copy()
        probs = gpt2_forward(kernels, checkpoint.params, config, acts, inputs, 1, T)
        logits = acts.logits_of(probs)[0, :T - 1, :V]
        for row in range(0, T - 1, ROWS):
            logp = log_softmax(logits[row:row + ROWS])
            targets = ids[start + row + 1:start + min(row + ROWS, T - 1) + 1]
            scores.nll -= float(logp[np.arange(len(targets)), targets].sum())
            scores.scored += len(targets)
            if other is not None:
                logq = log_softmax(other[row:row + ROWS])
                scores.kl.extend((np.exp(logq) * (logq - logp)).sum(axis=-1).tolist())
                scores.same_top1 += int((logp.argmax(axis=-1) == logq.argmax(axis=-1)).sum())
        if done:
            done(end)
    return scores
