"""An independent GPT-2 in numpy float64, written from the math (picoGPT's style), not
from the kernels: the oracle for the serial backend."""

import numpy as np


def layernorm(x, w, b, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def causal_attention(qkv, n_head):
    """qkv (T, 3C) -> (T, C)"""
    T, C3 = qkv.shape
    q, k, v = np.split(qkv, 3, axis=-1)  # each (T, C)
    heads = lambda x: x.reshape(T, n_head, -1).transpose(1, 0, 2)  # (NH, T, hs)
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])  # (NH, T, T)
    scores = np.where(np.tri(T, dtype=bool), scores, -np.inf)
    return (softmax(scores) @ v).transpose(1, 0, 2).reshape(T, C3 // 3)


def gpt2_logits(params, config, tokens, kv_as_held=None):
    """tokens (T,) -> logits (T, V) in float64. kv_as_held(qkv): the query, key and
    value vectors as a cache of another precision holds them (default: as computed)."""
    p = {name: np.asarray(x, dtype=np.float64) for name, x in params.items()}
    T = len(tokens)
    x = p["wte"][tokens] + p["wpe"][:T]
    for l in range(config.num_layers):
        h = layernorm(x, p["ln1w"][l], p["ln1b"][l])
        qkv = h @ p["qkvw"][l].T + p["qkvb"][l]
        if kv_as_held is not None:
            qkv = kv_as_held(qkv)
        x = x + causal_attention(qkv, config.num_heads) @ p["attprojw"][l].T + p["attprojb"][l]
        h = layernorm(x, p["ln2w"][l], p["ln2b"][l])
        h = gelu(h @ p["fcw"][l].T + p["fcb"][l])
        x = x + h @ p["fcprojw"][l].T + p["fcprojb"][l]
    x = layernorm(x, p["lnfw"], p["lnfb"])
    return x @ p["wte"][:config.vocab_size].T


def sample_gpt_c(params, config, tokens, n, margin=1e-3):
    """The tokens gpt.c appends to `tokens` (up to n in all): the first index whose CDF
    exceeds the coin 0.5. Implementations differ in probabilities by ~1e-5, so a token is
    only a fair expectation when the CDF is not within `margin` of the coin (checked)."""
    tokens = list(tokens)
    while len(tokens) < n:
        cdf = np.cumsum(softmax(gpt2_logits(params, config, np.array(tokens))[-1]))
        i = int(np.argmax(cdf > 0.5))
        assert np.abs(cdf - 0.5).min() > margin, "a knife-edge sample: pick another prompt or seed"
        tokens.append(i)
    return tokens
