"""gpt.c's fixed-coin sampler against a literal transcription of its C loop."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gptpy.sampler import sample_mult


def sample_mult_c(probabilities, n, coin):
    cdf = np.float32(0.0)
    for i in range(n):
        cdf = np.float32(cdf + probabilities[i])
        if np.float32(coin) < cdf:
            return i
    return n - 1


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(0, 1, width=32)),
       st.sampled_from([0.5, 0.0, 0.999]))
def test_matches_the_c_loop(weights, coin):
    probabilities = (weights / max(weights.sum(), np.float32(1e-30))).astype(np.float32)
    n = len(probabilities)
    assert sample_mult(probabilities, n, coin) == sample_mult_c(probabilities, n, coin)


def test_edges():
    assert sample_mult(np.zeros(5, np.float32), 5, 0.5) == 4  # the CDF never passes: n-1
    assert sample_mult(np.array([0.5, 0.5], np.float32), 2, 0.5) == 1  # strictly greater
    # only the first n entries count: llm.c's padded vocabulary is never sampled
    assert sample_mult(np.array([0.2, 0.2, 0.6], np.float32), 2, 0.5) == 1
