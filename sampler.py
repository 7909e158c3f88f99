"""Choosing the next token from the model's distribution.

Without options, gpt.c's sampler: the first token whose float32 CDF passes a fixed coin
of 0.5, so the output is a function of the input. With any of temperature, top-k, top-p
or a seed, the distribution is reshaped (temperature, then top-k, then top-p: `reshape`,
the definition) and a token drawn from it with numpy's seeded generator: the same seed
gives the same tokens wherever the model computes the same distribution (every backend,
pool size, cache or recompute).

The draw is compiled (`_draw`) and reads the logits. Top-k and top-p look first at a
few candidates: the vocabulary seen as 16 rows, the maxima of its columns (one
vectorized pass) say which columns hold the most probable tokens, and only those are
copied out, weighed and searched for the end of the kept set (the cut). Top-p also needs
the total weight e^((logit - max) / T) of the vocabulary (a vectorized pass); when the
cut lies below the candidates (a flat distribution), it is found by a bisection on the
logit over the whole vocabulary, each step a vectorized pass that counts the tokens
above a floor and adds their weights. Then a walk in id order to the seeded uniform
number, block sums first. It never sorts the vocabulary (`reshape` does, to define the
distribution): dev/sampling/sampler.py measures both. Its float32 weights differ from
reshape's float64 ones in the last bits, so a seeded draw can land on a neighbouring
token where its uniform number falls within about 1e-6 of a step of the distribution.
"""

import numpy as np
from numba import njit

from .parallel.kernels import LANES, _largest, fast_exp

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
GROUPS = 16  # the vocabulary seen as GROUPS rows, whose column maxima are one vectorized pass
NEAR = 4096  # tokens near the cut that _cut copies out, to search them alone
MOST_COLUMNS = NEAR // GROUPS  # columns whose tokens _candidates copies out, at most
SMALL_BRACKET = 64  # tokens few enough to sort when the search for the cut has narrowed to them


@njit(cache=True, fastmath=True, error_model="numpy")
def _column_maxima(x, n, columns):
    """x[:n] seen as GROUPS rows of width = n // GROUPS, and the tokens past them as
    columns of one: columns[c] = the largest of column c. Elementwise maxima of rows, a
    form LLVM vectorizes (a single running max it leaves scalar). Returns (the number
    of columns, the largest of x[:n])."""
    width = n // GROUPS
    columns[:width] = x[:width]
    for g in range(1, GROUPS):
        for c in range(width):
            columns[c] = max(columns[c], x[g * width + c])
    m = width + n - GROUPS * width
    columns[width:m] = x[GROUPS * width:n]
    return m, _largest(columns[:m], np.empty(LANES, np.float32))


WEIGHT_BLOCK = 256  # weights _weights adds in float32 before adding their sum in float64


@njit(cache=True, fastmath=True, error_model="numpy")
def _weights(logits, n, lmax, scale, weights):
    """weights[i] = e^((logits[i] - lmax) * scale) for i < n: the reshaped
    distribution, unnormalized (the largest weight is 1). Returns their sum: float32
    within a block of WEIGHT_BLOCK, float64 across (a float64 sum of each weight takes
    as long as the fast_exp). Vectorized passes: fast_exp, not libm's exp."""
    total = 0.0
    for first in range(0, n, WEIGHT_BLOCK):  # slices: LLVM vectorizes their loops, not one to min(n, ...)
        block, out = logits[first:min(n, first + WEIGHT_BLOCK)], weights[first:min(n, first + WEIGHT_BLOCK)]
        s = np.float32(0.0)
        for j in range(len(block)):
            w = fast_exp((block[j] - lmax) * scale)
            out[j] = w
            s += w
        total += s
    return total


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
def _near_cut(near_logits, near_weights, near_ids, m, k, goal, lo, hi, count_hi, weight_hi):
    """The end of the kept set when it lies among m tokens copied out: their logits lie
    in [lo, hi), every token above them (count_hi, of weight weight_hi) is at or above hi,
    and the tokens at or above lo reach k or the goal. Bisects that bracket until at most
    SMALL_BRACKET tokens lie in it, and sorts those (logit down, id up). Returns (cut
    logit, last id at that logit): a token is kept when its logit is above the cut logit,
    or equal to it and its id at most the last id."""
    lo, hi, count_lo, count_hi, weight_hi = _narrow(near_logits, near_weights, m, k, goal, lo, hi, count_hi + m,
                                                    count_hi, weight_hi, count_hi, weight_hi, SMALL_BRACKET)
    inside = np.array([j for j in range(m) if lo <= near_logits[j] < hi], np.int64)
    inside = inside[np.argsort(near_ids[inside])]  # id order, which the stable sort below keeps for a tie
    count, weight = count_hi, weight_hi
    for j in inside[np.argsort(-near_logits[inside], kind="mergesort")]:
        count += 1
        weight += near_weights[j]
        if count >= k or weight >= goal:
            return near_logits[j], near_ids[j]
    return np.nextafter(lo, np.float32(-np.inf)), -1  # not reached (rounding): the bracket is kept whole


@njit(cache=True, error_model="numpy")
def _cut(logits, weights, n, k, goal, lmax, temperature, hi, count_hi, weight_hi, near_logits, near_weights,
         near_ids):
    """Where reshape's kept set ends, searched in the whole vocabulary (the weights
    computed): the vocabulary in reshape's order (logit down, then id up) keeps its first
    tokens until k of them or a weight of `goal` (top_p of the total) is reached,
    whichever is first. The count_hi tokens at or above hi (of weight weight_hi) do not
    reach either. Returns (cut logit, last id), as _near_cut.

    Found without sorting the vocabulary: a floor whose tokens reach the goal (lo) and
    one whose tokens do not (hi) bracket the cut; each step of a bisection between them
    is a vectorized pass of _at_least over the vocabulary, until at most NEAR tokens lie
    between; those are copied out for _near_cut."""
    # the bracket's first floor: reach down from hi, doubling, until the tokens above
    # reach the goal (the cut of a peaked distribution is near the top)
    reach = min(max(FIRST_REACH, np.float32(2) * (lmax - hi) / np.float32(temperature)), LAST_REACH)
    while True:
        lo = lmax - reach * np.float32(temperature)
        count_lo, weight_lo = _at_least(logits, weights, n, lo, True)
        if count_lo >= k or weight_lo >= goal:
            break
        if reach >= LAST_REACH:  # below lo every weight is 0: never drawn, whatever top-k adds
            return np.nextafter(lo, np.float32(-np.inf)), -1
        hi, count_hi, weight_hi = lo, count_lo, weight_lo
        reach = min(2 * reach, LAST_REACH)
    lo, hi, count_lo, count_hi, weight_hi = _narrow(logits, weights, n, k, goal, lo, hi,
                                                    count_lo, count_hi, weight_hi, 0, 0.0, NEAR)
    if count_lo - count_hi > NEAR:  # a tie at lo of more tokens than near holds: kept in id order
        count, weight = count_hi, weight_hi
        for i in range(n):
            if lo <= logits[i] < hi:
                count, weight = count + 1, weight + weights[i]
                if count >= k or weight >= goal:
                    return logits[i], i
        return np.nextafter(lo, np.float32(-np.inf)), -1
    m = 0
    for i in range(n):  # the bracket's tokens
        if lo <= logits[i] < hi and m < NEAR:  # (m: should NaN logits make the counts disagree)
            near_logits[m], near_weights[m], near_ids[m] = logits[i], weights[i], i
            m += 1
    return _near_cut(near_logits, near_weights, near_ids, m, k, goal, lo, hi, count_hi, weight_hi)


@njit(cache=True, fastmath=True, error_model="numpy")
def _columns_at_least(columns, m, floor):
    """How many of columns[:m] are at least `floor`: a vectorized pass."""
    count = 0
    for c in range(m):
        count += columns[c] >= floor
    return count


@njit(cache=True, error_model="numpy")
def _candidates(logits, n, columns, m, want, lmax, scale, temperature, near_logits, near_weights, near_ids):
    """Copies out every token at or above a floor that `want` column maxima reach: the
    `want` most probable tokens are among them (that many columns hold a token at or
    above the floor each), with their weights, without a pass over the vocabulary. The
    floor is bisected on the columns (a pass over n / GROUPS values a step) until at most
    2 * want of them reach it; it starts LAST_REACH temperatures below the largest logit,
    below which every weight is 0 (never drawn). Returns (how many were copied, the
    floor, their weight, whether the floor is that start: every token that can be drawn
    copied); -1 copied when ties leave more than MOST_COLUMNS columns at the floor."""
    width = n // GROUPS
    start = lmax - LAST_REACH * np.float32(temperature)
    lo, hi = start, np.nextafter(lmax, np.float32(np.inf))
    count_lo = _columns_at_least(columns, m, lo)
    while count_lo > 2 * want:
        mid = lo + (hi - lo) / np.float32(2)
        if not (lo < mid < hi):  # no float32 left between: a tie
            break
        count = _columns_at_least(columns, m, mid)
        if count >= want:
            lo, count_lo = mid, count
        else:
            hi = mid
    if count_lo > MOST_COLUMNS:
        return -1, lo, 0.0, False
    copied, weight = 0, 0.0
    for c in range(m):
        if columns[c] >= lo:
            first, step = (c, width) if c < width else (GROUPS * width + c - width, n)  # a row's column, or a lone token
            for i in range(first, min(first + GROUPS * step, n), step):
                if logits[i] >= lo and copied < NEAR:  # (at most GROUPS * MOST_COLUMNS = NEAR)
                    near_logits[copied], near_ids[copied] = logits[i], i
                    near_weights[copied] = fast_exp((logits[i] - lmax) * scale)
                    weight += near_weights[copied]
                    copied += 1
    return copied, lo, weight, lo == start


@njit(cache=True, error_model="numpy")
def _walk_near(near_logits, near_weights, near_ids, m, cut, last, r):
    """The kept tokens among the m copied out, in id order: the first whose cumulative
    weight passes r times their weight."""
    kept = np.array([j for j in range(m) if near_logits[j] > cut or (near_logits[j] == cut and near_ids[j] <= last)],
                    np.int64)
    kept = kept[np.argsort(near_ids[kept])]
    total = 0.0
    for j in kept:
        total += near_weights[j]
    goal, cumulative = r * total, 0.0
    for j in kept:
        cumulative += near_weights[j]
        if cumulative > goal:
            return near_ids[j]
    return near_ids[kept[-1]] if len(kept) else near_ids[0]  # r * total rounded past the sum: the last kept


WALK_BLOCK = 1024  # tokens whose kept weight _kept_sums adds in one vectorized run


@njit(cache=True, fastmath=True, error_model="numpy")
def _kept_sums(logits, weights, n, cut, last):
    """The kept weight of each block of WALK_BLOCK tokens: vectorized passes."""
    sums = np.zeros((n + WALK_BLOCK - 1) // WALK_BLOCK)
    for b in range(len(sums)):
        first = b * WALK_BLOCK  # slices: a loop from first to min(n, ...) over the rows LLVM left scalar
        block_logits, block_weights = logits[first:min(n, first + WALK_BLOCK)], weights[first:min(n, first + WALK_BLOCK)]
        s = 0.0
        for j in range(len(block_logits)):
            kept = (block_logits[j] > cut) | ((block_logits[j] == cut) & (first + j <= last))  # a select, no branch
            s += np.float64(block_weights[j]) if kept else 0.0
        sums[b] = s
    return sums


@njit(cache=True, error_model="numpy")
def _walk(logits, weights, n, cut, last, r):
    """The kept tokens of the vocabulary, in id order: the first whose cumulative weight
    passes r times their weight. The block it lies in is found from _kept_sums, and only
    that block (and any after it, should rounding need) is walked token by token."""
    sums = _kept_sums(logits, weights, n, cut, last)
    goal, cumulative, start = r * sums.sum(), 0.0, 0
    for b in range(len(sums)):
        if cumulative + sums[b] > goal:
            break
        cumulative += sums[b]
        start += WALK_BLOCK
    for i in range(start, n):
        if logits[i] > cut or (logits[i] == cut and i <= last):
            cumulative += weights[i]
            if cumulative > goal:
                return i
    for i in range(n - 1, -1, -1):  # r * kept rounded past the sum: the last kept token
        if logits[i] > cut or (logits[i] == cut and i <= last):
            return i
    return n - 1


@njit(cache=True, error_model="numpy")
def _draw(logits, n, temperature, top_k, top_p, r, weights, columns, near_logits, near_weights, near_ids):
    """The token that reshape's distribution (made from the logits) gives the uniform
    number r in [0, 1): the first kept token, in id order, whose cumulative weight
    passes r times the kept weight. Top-k and top-p look first among the candidates
    that _candidates copies out (top-p needs the vocabulary's total weight, temperature
    alone every weight); when the kept set reaches below them (a flat distribution, a
    large k, ties), the vocabulary is searched below them."""
    m, lmax = _column_maxima(logits, n, columns)
    scale = np.float32(min(1.0 / temperature, 1e30))  # not inf: 0 * inf would be NaN at the largest
    k = n if top_k <= 0 else min(top_k, n)
    total = _weights(logits, n, lmax, scale, weights) if top_p < 1.0 or k == n else np.nan
    goal = top_p * total if top_p < 1.0 else np.inf
    if k == n and top_p == 1.0:  # temperature alone: every token is kept
        return _walk(logits, weights, n, np.float32(-np.inf), n, r)
    hi, count_hi, weight_hi = np.nextafter(lmax, np.float32(np.inf)), 0, 0.0  # no token reaches hi
    if -np.inf < lmax < np.inf:
        copied, lo, weight, whole = _candidates(logits, n, columns, m, min(k, MOST_COLUMNS // 2), lmax, scale,
                                                temperature, near_logits, near_weights, near_ids)
        if copied >= k or weight >= goal or (copied > 0 and whole):  # the kept set is among them
            cut, last = _near_cut(near_logits, near_weights, near_ids, copied, k, goal, lo, hi, 0, 0.0)
            return _walk_near(near_logits, near_weights, near_ids, copied, cut, last, r)
        if copied > 0:  # they do not reach the cut: search the vocabulary below them
            hi, count_hi, weight_hi = lo, copied, weight
    if np.isnan(total):
        total = _weights(logits, n, lmax, scale, weights)
    cut, last = _cut(logits, weights, n, k, goal, lmax, temperature, hi, count_hi, weight_hi, near_logits,
                     near_weights, near_ids)
    return _walk(logits, weights, n, cut, last, r)


def scratch(n):
    """_draw's scratch rows for a vocabulary of n: weights, column maxima, and the tokens
    near the cut (logits, weights, ids)."""
    return np.empty(n, np.float32), np.empty(n // GROUPS + GROUPS, np.float32), np.empty(NEAR, np.float32), \
        np.empty(NEAR, np.float32), np.empty(NEAR, np.int64)


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
            self.scratch = scratch(n)
        return int(_draw(logits, n, self.temperature, self.top_k, self.top_p, self.rng.random(), *self.scratch))
