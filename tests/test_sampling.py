"""The sampler: gpt.c's fixed coin against a literal transcription of its C loop; the
reshaped distributions against an independent formulation; the seeded draws against
their distribution; and the CLI's seeds across backends."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gptpy.sampler import Sampler, reshape, sample_mult


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


# ----------------------------------------------------------------------------
# temperature, top-k, top-p and the seeded draw

def independent_distribution(logits, temperature, top_k, top_p):
    """The same reshaping written from the logits, another way: softmax(logits / T);
    the top-k by a threshold on the k-th largest logit; top-p by walking the tokens
    from the most probable until their total reaches p."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_k:
        threshold = np.partition(z, -top_k)[-top_k]
        p = np.where(z >= threshold, p, 0.0)
        p /= p.sum()
    if top_p < 1.0:
        kept, total = np.zeros_like(p, dtype=bool), 0.0
        for i in sorted(range(len(p)), key=lambda i: -p[i]):
            kept[i] = True
            total += p[i]
            if total >= top_p:
                break
        p = np.where(kept, p, 0.0)
        p /= p.sum()
    return p


def softmax32(logits):
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (3.0, 0, 1.0), (1.0, 5, 1.0),
                                                     (1.0, 0, 0.8), (0.5, 20, 0.9), (2.0, 1, 1.0), (1.0, 0, 1e-9)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reshape_matches_an_independent_formulation(temperature, top_k, top_p, seed):
    logits = np.random.default_rng(seed).standard_normal(101) * 3  # distinct: no ties at the cut
    expected = independent_distribution(logits, temperature, top_k, top_p)
    got = reshape(softmax32(logits), temperature, top_k, top_p)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
    assert (got > 0).sum() == (expected > 0).sum()


def chi_square_99_9999(dof):
    """The chi-square value a true distribution exceeds with probability 1e-6
    (Wilson-Hilferty): a bound no correct sampler reaches with these fixed seeds."""
    z = 4.753424  # the standard normal's 1 - 1e-6 quantile
    return dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.8, 0, 0.9), (1.5, 10, 1.0)])
def test_seeded_draws_follow_the_distribution(temperature, top_k, top_p):
    """100,000 draws with fixed seeds (deterministic) against the expected counts."""
    logits = (np.random.default_rng(7).standard_normal(30) * 2).astype(np.float32)
    probabilities = softmax32(logits)
    expected = reshape(probabilities, temperature, top_k, top_p)
    counts = np.zeros(30)
    for seed in range(50):
        sampler = Sampler(temperature, top_k, top_p, seed)
        sampler.start()
        for _ in range(2000):
            counts[sampler.next_token(probabilities, logits, 30)] += 1
    assert counts[expected == 0].sum() == 0  # filtered tokens are never drawn
    live = expected > 0
    e = expected[live] * counts.sum()
    chi2 = ((counts[live] - e) ** 2 / e).sum()
    assert chi2 < chi_square_99_9999(live.sum() - 1), chi2


def test_a_seed_repeats_and_start_rewinds():
    logits = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    probabilities = softmax32(logits)
    a, b = Sampler(top_p=0.9, seed=5), Sampler(top_p=0.9, seed=5)
    a.start(), b.start()
    first = [a.next_token(probabilities, logits, 50) for _ in range(30)]
    assert first == [b.next_token(probabilities, logits, 50) for _ in range(30)]
    a.start()  # each completion draws as a process of its own would
    assert [a.next_token(probabilities, logits, 50) for _ in range(30)] == first
    assert len(set(first)) > 3


def test_temperature_zero_is_the_argmax_and_no_option_is_gpt_c():
    probabilities = np.array([0.3, 0.25, 0.45, 0.0], np.float32)
    assert Sampler(temperature=0).next_token(probabilities, None, 3) == 2
    assert Sampler().next_token(probabilities, None, 3) == sample_mult(probabilities, 3, 0.5) == 1


# ----------------------------------------------------------------------------
# the CLI: a seed gives the same tokens everywhere the model computes the same numbers

FLAT = ["--temperature", "20"]  # confident models' logits (sd ~20) become sd ~1: the draws vary


def test_a_seed_gives_the_same_tokens_on_every_backend_and_mode(gpt, make_model):
    model = make_model(confident=True)
    runs = {}
    for options in ([], ["--recompute"], ["--backend", "serial"], ["--threads", "1"], ["--threads", "2"]):
        result = gpt("--model", model, *FLAT, "--seed", "11", *options, "5", "6")
        assert result.returncode == 0, result.stderr
        runs[" ".join(options)] = result.stdout
    assert len(set(runs.values())) == 1, runs
    other = gpt("--model", model, *FLAT, "--seed", "12", "5", "6").stdout
    greedy = gpt("--model", model, "--temperature", "0", "5", "6").stdout
    assert len({runs[""], other, greedy}) == 3  # the draws do vary


def test_without_a_seed_each_run_draws_anew(gpt, make_model):
    model = make_model(confident=True)
    outputs = {gpt("--model", model, *FLAT, "-n", "30", "5").stdout for _ in range(3)}
    assert len(outputs) == 3


@pytest.mark.parametrize("option,value,message", [
    ("--temperature", "-1", "must be in [0, 1e+06]"), ("--temperature", "nan", "must be in"),
    ("--temperature", "1e999", "must be in"), ("--temperature", "warm", "'warm' is not a number"),
    ("--top-k", "0", "must be at least 1"), ("--top-p", "0", "must be in (0, 1]"), ("--top-p", "1.5", "must be in"),
    ("--seed", "-3", "must be at least 0"),
])
def test_bad_sampling_options(gpt, make_model, option, value, message):
    result = gpt("--model", make_model(), option, value, "1")
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, 0, 1.0), (0.8, 40, 0.95), (0.7, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.8), (2.0, 1, 1.0),
    (1.0, 0, 1e-9), (1.5, 3, 0.3), (1.0, 100000, 0.99), (20.0, 0, 0.95), (20.0, 1000, 1.0), (1e-30, 0, 0.9)])
@pytest.mark.parametrize("n", [101, 50257])
@pytest.mark.parametrize("coarse", [False, True])
def test_the_compiled_draw_is_reshapes_distribution(temperature, top_k, top_p, n, coarse):
    """For 400 uniform numbers r, the token the compiled draw gives is the one reshape's
    CDF gives (r within 2e-6 of a step of the CDF is left out: float32 against float64).
    Logits with ties, and temperatures that flatten the distribution until the
    candidates must grow to the whole vocabulary. Coarse logits (whole numbers) tie by
    the hundred: the cut falls inside a tie, which spans many of the candidate search's
    columns and is decided by token id."""
    from gptpy.sampler import _draw, scratch as sampler_scratch
    logits = (np.random.default_rng(n).standard_normal(n) * 3).astype(np.float32)
    logits[20:24] = logits[7]  # ties: the lower id first
    if coarse:
        logits = np.round(logits)
    cdf = np.cumsum(reshape(softmax32(logits), temperature, top_k, top_p))
    scratch = sampler_scratch(n)
    checked = 0
    for r in np.random.default_rng(1).random(400):
        if np.abs(cdf - r).min() < 2e-6:
            continue
        expected = min(int(np.searchsorted(cdf, r, side="right")), n - 1)
        assert _draw(logits, n, temperature, top_k, top_p, r, *scratch) == expected, r
        checked += 1
    assert checked > 300


def test_a_temperature_too_small_to_compute_with_is_the_argmax(gpt, make_model):
    """1e-310 passes the range check; its reshaping underflows, and the draw takes the
    most probable token, as temperature 0 does: no warning, no NaN distribution."""
    model = make_model(seed=1, hesitant=True)
    greedy = gpt("--model", model, "--temperature", "0", "5", "6")
    for options in (["--temperature", "1e-310"], ["--temperature", "1e-310", "--top-k", "3", "--top-p", "0.5"]):
        tiny = gpt("--model", model, *options, "5", "6")
        assert tiny.returncode == 0 and tiny.stderr == "" and tiny.stdout == greedy.stdout, tiny.stderr


def test_the_compiled_draw_ends_on_logits_that_are_not_finite():
    """Crafted weights can make logits NaN, +-inf or huge: the cut's bisection cannot
    split such a bracket, and must stop (it once looped forever on 100 tokens at +inf),
    drawing a token of the vocabulary. In a process of its own: a loop in compiled code
    cannot be interrupted."""
    code = """if True:
        import numpy as np
        from gptpy.sampler import Sampler
        n = 300
        cases = [np.full(n, np.nan), np.r_[np.full(100, np.inf), np.zeros(n - 100)],
                 np.r_[np.full(10, np.nan), np.full(10, -np.inf), np.full(100, np.inf), np.ones(n - 120)],
                 np.full(n, 3e38), np.full(n, -np.inf)]
        for logits in cases:
            for options in ((0.8, 40, 0.95, 1), (None, None, 0.9, 1), (2.0, None, None, 1), (None, 5, None, 1)):
                token = Sampler(*options).next_token(np.full(n, 1 / n, np.float32), logits.astype(np.float32), n)
                assert 0 <= token < n, (logits[:3], options, token)
        print("done")
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
