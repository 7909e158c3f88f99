"""Choosing the next token from the model's distribution.

Without options, gpt.c's sampler: the first token whose float32 CDF passes a fixed coin
of 0.5, so the output is a function of the input. With any of temperature, top-k, top-p
or a seed, the distribution is reshaped (temperature, then top-k, then top-p: `reshape`,
the definition) and a token drawn from it with numpy's seeded generator: the same seed
gives the same tokens wherever the model computes the same distribution (every backend,
pool size, cache or recompute).

The draw is compiled (`_draw`) and reads the logits: weights e^((logit - max) / T) in
one vectorized pass, then the end of the kept set found by a bisection on the logit,
each step one vectorized pass that counts the tokens above a floor and adds their
weights, until the few tokens at the cut can be sorted; then a walk in id order to the
seeded uniform number. It never sorts the vocabulary (`reshape` does, to define the
distribution): dev/sampling/sampler.py measures both. Its float32 weights differ from
reshape's float64 ones in the last bits, so a seeded draw can land on a neighbouring
token where its uniform number falls within about 1e-6 of a step of the distribution.
"""

import numpy as np
from numba import njit

from .parallel.kernels import fast_exp

COIN = 0.5  # gpt.c samples with a fixed coin: the output is a function of the input


@njit(cache=True)
def sample_mult(probabilities, n, coin):
    """gpt.c's sampler: the first i with coin < cdf[i], the CDF summed in float32 from
    index 0, in gpt.c's order of additions; n-1 if none is."""
    cdf = np.float32(0.0)
    threshold = np.float32(coin)
    for i in range(n):
        cdf += probabilities[i]
        if threshold < cdf:
            return i
    return n - 1


def reshape(probabilities, temperature=1.0, top_k=0, top_p=1.0):
    """The definition of the distribution a draw is made from (float64, sums to 1):
    probabilities (n,) raised to 1/temperature (softmax(logits / temperature),
    renormalized), then only the top_k most probable kept (0: all), then only the
    smallest set of most probable tokens whose probability, in the distribution before
    top-k, reaches top_p. Ties in probability keep the lower token id. Written with a sort
    of the whole vocabulary, for clarity; `_draw` computes the same without one."""
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


FIRST_REACH = np.float32(0.125)  # temperatures below the largest logit: where _cut's search starts
LAST_REACH = np.float32(100.0)  # and where it ends: past it every weight is 0 (fast_exp)
LANES = 16  # running maxima in _largest: a 512-bit vector of float32
NEAR = 4096  # tokens near the cut that _cut copies out, to search them alone
SMALL_BRACKET = 64  # tokens few enough to sort when the search for the cut has narrowed to them


@njit(cache=True, fastmath=True, error_model="numpy")
def _largest(x, n):
    """max(x[:n]) in LANES running maxima, a form LLVM vectorizes (a single running max
    it leaves scalar)."""
    lanes = np.full(LANES, x[0])
    for i in range(n // LANES):
        for j in range(LANES):
            lanes[j] = max(lanes[j], x[LANES * i + j])
    largest = lanes.max()
    for i in range(n // LANES * LANES, n):
        largest = max(largest, x[i])
    return largest


@njit(cache=True, fastmath=True, error_model="numpy")
def _weights(logits, n, temperature, weights):
    """weights[i] = e^((logits[i] - max) / temperature) for i < n: the reshaped
    distribution, unnormalized (the largest weight is 1). Returns (their sum in float64,
    the largest logit). Vectorized passes: fast_exp, not libm's exp."""
    lmax = _largest(logits, n)
    scale = np.float32(min(1.0 / temperature, 1e30))  # not inf: 0 * inf would be NaN at the largest
    total = 0.0
    for i in range(n):
        w = fast_exp((logits[i] - lmax) * scale)
        weights[i] = w
        total += w
    return total, lmax


@njit(cache=True, fastmath=True, error_model="numpy")
def _at_least(logits, weights, n, floor, weighed):
    """(how many, their weight if `weighed`) of the tokens whose logit is at least
    `floor`: one vectorized pass (top-k alone needs only the count, a cheaper one)."""
    count, weight = 0, 0.0
    if weighed:
        for i in range(n):
            if logits[i] >= floor:
                count += 1
                weight += weights[i]
    else:
        for i in range(n):
            count += logits[i] >= floor
    return count, weight


@njit(cache=True, error_model="numpy")
def _narrow(logits, weights, n, k, goal, lo, hi, count_lo, count_hi, weight_hi, count_out, weight_out, most):
    """Bisects the bracket [lo, hi) of the cut logit until at most `most` of the tokens
    logits[:n] lie in it, or no float32 does: the tokens at or above lo reach k or the
    goal, those at or above hi do not. count_lo, count_hi and weight_hi count the
    tokens at or above lo and hi, the count_out tokens (of weight_out) that are not in
    logits[:n] included (they are all above hi). Returns the narrowed (lo, hi,
    count_lo, count_hi, weight_hi)."""
    while count_lo - count_hi > most:
        mid = lo + (hi - lo) / np.float32(2)
        if not (lo < mid < hi):  # no float32 left between (a tie), or inf or NaN logits: stop here
            break
        count, weight = _at_least(logits, weights, n, mid, goal < np.inf)
        count, weight = count + count_out, weight + weight_out
        if count >= k or weight >= goal:
            lo, count_lo = mid, count
        else:
            hi, count_hi, weight_hi = mid, count, weight
    return lo, hi, count_lo, count_hi, weight_hi


@njit(cache=True, error_model="numpy")
def _cut(logits, weights, n, k, goal, lmax, temperature, near_logits, near_weights, near_ids):
    """Where reshape's kept set ends. The vocabulary in reshape's order (logit down, then
    id up) keeps its first tokens until k of them or a weight of `goal` (top_p of the
    total) is reached, whichever is first. Returns (cut logit, last id at that logit,
    weight of the kept tokens at that logit): a token is kept when its logit is above
    the cut logit, or equal to it and its id at most the last id.

    Found without sorting the vocabulary: a floor whose tokens reach the goal (lo) and
    one whose tokens do not (hi) bracket the cut; each step of a bisection between them
    is a vectorized pass of _at_least over the vocabulary, until at most NEAR tokens lie
    between, then over those tokens, copied out, until at most SMALL_BRACKET do; those
    are sorted."""
    # the bracket's first floor: reach down from the largest logit, doubling, until the
    # tokens above reach the goal (the cut of a peaked distribution is near the top)
    hi, count_hi, weight_hi = np.nextafter(lmax, np.float32(np.inf)), 0, 0.0  # no token reaches hi
    reach = FIRST_REACH
    while True:
        lo = lmax - reach * np.float32(temperature)
        count_lo, weight_lo = _at_least(logits, weights, n, lo, True)
        if count_lo >= k or weight_lo >= goal:
            break
        if reach >= LAST_REACH:  # below lo every weight is 0: never drawn, whatever top-k adds
            return np.nextafter(lo, np.float32(-np.inf)), -1, 0.0
        hi, count_hi, weight_hi = lo, count_lo, weight_lo
        reach = min(2 * reach, LAST_REACH)
    lo, hi, count_lo, count_hi, weight_hi = _narrow(logits, weights, n, k, goal, lo, hi,
                                                    count_lo, count_hi, weight_hi, 0, 0.0, NEAR)
    m = 0
    for i in range(n):  # the bracket's tokens, in id order
        if lo <= logits[i] < hi:
            near_logits[m], near_weights[m], near_ids[m] = logits[i], weights[i], i
            m += 1
    lo, hi, count_lo, count_hi, weight_hi = _narrow(near_logits, near_weights, m, k, goal, lo, hi, count_lo,
                                                    count_hi, weight_hi, count_hi, weight_hi, SMALL_BRACKET)
    inside = np.array([j for j in range(m) if lo <= near_logits[j] < hi], np.int64)
    count, weight, tied, previous = count_hi, weight_hi, 0.0, np.float32(np.nan)
    for j in inside[np.argsort(-near_logits[inside], kind="mergesort")]:  # stable: a tie keeps id order
        tied = near_weights[j] + (tied if near_logits[j] == previous else 0.0)  # the kept tokens at this logit
        previous = near_logits[j]
        count += 1
        weight += near_weights[j]
        if count >= k or weight >= goal:
            return near_logits[j], near_ids[j], tied
    return np.nextafter(lo, np.float32(-np.inf)), -1, 0.0  # not reached (rounding): the bracket is kept whole


@njit(cache=True, error_model="numpy")
def _draw(logits, n, temperature, top_k, top_p, r, weights, near_logits, near_weights, near_ids):
    """The token that reshape's distribution (made from the logits) gives the uniform
    number r in [0, 1): the first kept token, in id order, whose cumulative weight
    passes r times the kept weight."""
    total, lmax = _weights(logits, n, temperature, weights)
    k = n if top_k <= 0 else min(top_k, n)
    goal = top_p * total if top_p < 1.0 else np.inf
    if k < n or top_p < 1.0:
        cut, last, tied = _cut(logits, weights, n, k, goal, lmax, temperature, near_logits, near_weights, near_ids)
        kept = _at_least(logits, weights, n, np.nextafter(cut, np.float32(np.inf)), True)[1] + tied
    else:  # temperature alone: every token is kept
        cut, last, kept = np.float32(-np.inf), n, total
    goal, cumulative = r * kept, 0.0
    for i in range(n):
        if logits[i] > cut or (logits[i] == cut and i <= last):
            cumulative += weights[i]
            if cumulative > goal:
                return i
    for i in range(n - 1, -1, -1):  # r * kept rounded past the sum: the last kept token
        if logits[i] > cut or (logits[i] == cut and i <= last):
            return i
    return n - 1


class Sampler:
    """next_token(probabilities, logits, n) for the first n entries of one position's
    distribution and logits; start() before each completion. Without options it is
    gpt.c's fixed coin, which reads the probabilities; the options read the logits."""

    def __init__(self, temperature=None, top_k=None, top_p=None, seed=None):
        self.fixed_coin = temperature is None and top_k is None and top_p is None and seed is None
        # one type each, so that numba's cache holds one compiled draw for every run
        self.temperature = 1.0 if temperature is None else float(temperature)
        self.top_k, self.top_p, self.seed = int(top_k or 0), 1.0 if top_p is None else float(top_p), seed
        self.rng = np.random.default_rng(seed)  # without a seed: fresh entropy, once per process
        self.scratch = None  # _draw's scratch rows, made once

    def start(self):
        """A completion begins: with a seed, each completion draws the same numbers as a
        process of its own would (gpt --stdin answers each request as gpt would)."""
        if self.seed is not None:
            self.rng = np.random.default_rng(self.seed)

    def next_token(self, probabilities, logits, n):
        if self.fixed_coin:
            return sample_mult(probabilities, n, COIN)
        if self.temperature == 0:  # greedy; argmax takes the lowest id of a tie
            return int(np.argmax(probabilities[:n]))
        if self.scratch is None or len(self.scratch[0]) < n:
            self.scratch = np.empty(n, np.float32), np.empty(NEAR, np.float32), np.empty(NEAR, np.float32), \
                np.empty(NEAR, np.int64)
        return int(_draw(logits, n, self.temperature, self.top_k, self.top_p, self.rng.random(), *self.scratch))
