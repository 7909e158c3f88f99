"""Choosing the next token from the model's distribution.

Without options, gpt.c's sampler: the first token whose float32 CDF passes a fixed coin
of 0.5, so the output is a function of the input. With any of temperature, top-k, top-p
or a seed, the distribution is reshaped (temperature, then top-k, then top-p) and a token
drawn from it with numpy's seeded generator: the same seed gives the same tokens wherever
the model computes the same distribution (every backend, pool size, cache or recompute).
"""

import numpy as np

COIN = 0.5  # gpt.c samples with a fixed coin: the output is a function of the input


def sample_mult(probabilities, n, coin):
    """gpt.c's sampler: the first i with coin < cdf[i], the CDF summed in float32 from
    index 0 (np.cumsum accumulates sequentially, as the C loop does); n-1 if none is."""
    cdf = np.cumsum(probabilities[:n], dtype=np.float32)
    i = int(np.argmax(cdf > np.float32(coin)))  # the first True, or 0 when there is none
    return i if cdf[i] > np.float32(coin) else n - 1


def reshape(probabilities, temperature=1.0, top_k=0, top_p=1.0):
    """The distribution a draw is made from (float64, sums to 1): probabilities (n,)
    raised to 1/temperature (softmax(logits / temperature), renormalized), then only the
    top_k most probable kept (0: all), then only the smallest set of most probable tokens
    whose probability reaches top_p. Ties in probability keep the lower token id."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature != 1.0:
        with np.errstate(divide="ignore"):  # probability 0 stays 0
            logp = np.log(p) / temperature
        p = np.exp(logp - logp.max())
    order = np.argsort(-p, kind="stable")  # most probable first
    keep = len(p) if top_k <= 0 else min(top_k, len(p))
    if top_p < 1.0:
        cumulative = np.cumsum(p[order]) / p.sum()
        keep = min(keep, int(np.searchsorted(cumulative, top_p)) + 1)  # the first that reaches top_p
    filtered = np.zeros_like(p)
    filtered[order[:keep]] = p[order[:keep]]
    return filtered / filtered.sum()


class Sampler:
    """next_token(probabilities, n) for the first n entries; start() before each
    completion. Without options it is gpt.c's fixed coin."""

    def __init__(self, temperature=None, top_k=None, top_p=None, seed=None):
        self.fixed_coin = temperature is None and top_k is None and top_p is None and seed is None
        self.temperature = 1.0 if temperature is None else temperature
        self.top_k, self.top_p, self.seed = top_k or 0, 1.0 if top_p is None else top_p, seed
        self.rng = np.random.default_rng(seed)  # without a seed: fresh entropy, once per process

    def start(self):
        """A completion begins: with a seed, each completion draws the same numbers as a
        process of its own would (gpt --stdin answers each request as gpt would)."""
        if self.seed is not None:
            self.rng = np.random.default_rng(self.seed)

    def next_token(self, probabilities, n):
        if self.fixed_coin:
            return sample_mult(probabilities, n, COIN)
        if self.temperature == 0:  # greedy; argmax takes the lowest id of a tie
            return int(np.argmax(probabilities[:n]))
        p = reshape(probabilities[:n], self.temperature, self.top_k, self.top_p)
        return min(int(np.searchsorted(np.cumsum(p), self.rng.random(), side="right")), n - 1)
