"""Choosing the next token from the model's distribution."""

import numpy as np

COIN = 0.5  # gpt.c samples with a fixed coin: the output is a function of the input


def sample_mult(probabilities, n, coin):
    """gpt.c's sampler: the first i with coin < cdf[i], the CDF summed in float32 from
    index 0 (np.cumsum accumulates sequentially, as the C loop does); n-1 if none is."""
    cdf = np.cumsum(probabilities[:n], dtype=np.float32)
    i = int(np.argmax(cdf > np.float32(coin)))  # the first True, or 0 when there is none
    return i if cdf[i] > np.float32(coin) else n - 1
