"""llm.c's forward kernels, serial: the reference every other backend is checked against.

Loops and arithmetic follow llm.c's train_gpt2.c line for line, in float32 and in its
order of additions (no fastmath), so these kernels compute what gpt.c computes. numba
would widen `float32 op python-float` to float64, so every constant is an np.float32.

Conventions, as in llm.c: outputs first, then inputs, then sizes; nothing is allocated
inside a kernel. B is the batch (always 1 for gpt), T positions, C channels.
"""

import math

import numpy as np
from numba import njit

from ..weights import as_float, stored, weight_at

jit = njit(cache=True, error_model="numpy")

# llm.c: #define GELU_SCALING_FACTOR sqrtf(2.0f / M_PI)
GELU_SCALING_FACTOR = np.float32(math.sqrt(2.0 / math.pi))


@jit
def encoder_forward(out, inp, wte, wpe, B, T, C):
    """out (B,T,C) = wte[inp] + wpe[t]; inp (B,T) int32 token ids, wte (Vp,C) float32 or
    bfloat16 bits (weights.py), wpe (maxT,C)."""
    for b in range(B):
        for t in range(T):
            ix = inp[b, t]
            for i in range(C):
                out[b, t, i] = weight_at(wte, ix, i) + wpe[t, i]


@jit
def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    """out (B,T,C) = (inp - mean) * rstd * weight + bias, per position; mean, rstd (B,T);
    inp (B,T,C); weight, bias (C,)."""
    eps = np.float32(1e-5)
    for b in range(B):
        for t in range(T):
            # pass 1: the mean
            m = np.float32(0.0)
            for i in range(C):
                m += inp[b, t, i]
            m = m / np.float32(C)
            # pass 2: the variance, without bias correction
            v = np.float32(0.0)
            for i in range(C):
                xshift = inp[b, t, i] - m
                v += xshift * xshift
            v = v / np.float32(C)
            s = np.float32(1.0) / math.sqrt(v + eps)
            # pass 3: normalize, then scale and shift
            for i in range(C):
                n = s * (inp[b, t, i] - m)
                out[b, t, i] = n * weight[i] + bias[i]
            mean[b, t] = m
            rstd[b, t] = s


@jit
def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    """out (B,T,OC) = inp (B,T,C) @ weight (OC,C).T + bias (OC,); bias may be None; weight
    of any type weights.py has, every product and sum in float32; out float32, or
    bfloat16 bits where it is a 16-bit KV cache (each result rounded once)."""
    for b in range(B):
        for t in range(T):
            for o in range(OC):
                val = np.float32(0.0) if bias is None else bias[o]
                for i in range(C):
                    val += inp[b, t, i] * weight_at(weight, o, i)
                out[b, t, o] = stored(out, val)


@jit
def attention_forward(out, preatt, att, inp, B, T, C, NH):
    """Causal self-attention for the last Tq of T positions, Tq = out.shape[1].
    out (B,Tq,C); preatt, att (B,NH,Tq,T) the scores before and after the softmax;
    inp (B,T,3C) the query, key and value vectors of all T positions (float32, or
    bfloat16 bits: a 16-bit KV cache, widened as they are read). Tq = T is llm.c's
    kernel; with Tq < T the first T - Tq positions only lend their keys and values (a KV
    cache), and what is computed for the last Tq is the same."""
    Tq = out.shape[1]
    hs = C // NH  # head size
    # llm.c: float scale = 1.0 / sqrtf(hs), a double division rounded to float
    scale = np.float32(1.0 / math.sqrt(np.float32(hs)))
    for b in range(B):
        for tq in range(Tq):
            t = T - Tq + tq  # the position of this query
            for h in range(NH):
                q = h * hs
                # pass 1: query . key, and the max for a stable softmax
                maxval = np.float32(-np.inf)
                for t2 in range(t + 1):
                    k = h * hs + C
                    val = np.float32(0.0)
                    for i in range(hs):
                        val += as_float(inp[b, t, q + i]) * as_float(inp[b, t2, k + i])
                    val *= scale
                    if val > maxval:
                        maxval = val
                    preatt[b, h, tq, t2] = val
                # pass 2: exp and its sum
                expsum = np.float32(0.0)
                for t2 in range(t + 1):
                    expv = math.exp(preatt[b, h, tq, t2] - maxval)
                    expsum += expv
                    att[b, h, tq, t2] = expv
                expsum_inv = np.float32(0.0) if expsum == 0.0 else np.float32(1.0) / expsum
                # pass 3: normalize; the causal mask zeroes the future
                for t2 in range(T):
                    if t2 <= t:
                        att[b, h, tq, t2] *= expsum_inv
                    else:
                        att[b, h, tq, t2] = np.float32(0.0)
                # pass 4: the attention-weighted sum of the values
                o = h * hs
                for i in range(hs):
                    out[b, tq, o + i] = np.float32(0.0)
                for t2 in range(t + 1):
                    v = h * hs + 2 * C
                    a = att[b, h, tq, t2]
                    for i in range(hs):
                        out[b, tq, o + i] += a * as_float(inp[b, t2, v + i])


@jit
def gelu_forward(out, inp, N):
    """out (N,) = GELU(inp (N,)), the tanh approximation GPT-2 was trained with."""
    for i in range(N):
        x = inp[i]
        cube = np.float32(0.044715) * x * x * x
        out[i] = np.float32(0.5) * x * (np.float32(1.0) + math.tanh(GELU_SCALING_FACTOR * (x + cube)))


@jit
def residual_forward(out, inp1, inp2, N):
    """out (N,) = inp1 (N,) + inp2 (N,)."""
    for i in range(N):
        out[i] = inp1[i] + inp2[i]


@jit
def fused_residual_forward(residual, normed, mean, rstd, inp1, inp2, weight, bias, N, C):
    """residual (N,C) = inp1 (N,C) + inp2 (N,C), then normed (N,C), mean, rstd (N,) its
    layernorm with weight, bias (C,): llm.c's fused_residual_forward5 (train_gpt2.cu),
    where the stream leaves a layer and meets the next layernorm. Here the definition:
    residual_forward, then layernorm_forward, over the N = B*T positions."""
    residual_forward(residual.reshape(N * C), inp1.reshape(N * C), inp2.reshape(N * C), N * C)
    layernorm_forward(normed.reshape(1, N, C), mean.reshape(1, N), rstd.reshape(1, N), residual.reshape(1, N, C),
                      weight, bias, 1, N, C)


@jit
def softmax_forward(probs, logits, B, T, V, Vp):
    """probs (B,T,Vp) = softmax of logits (B,T,Vp) over the first V entries; the padding
    entries V..Vp-1 get probability 0."""
    for b in range(B):
        for t in range(T):
            maxval = np.float32(-np.inf)
            for i in range(V):
                if logits[b, t, i] > maxval:
                    maxval = logits[b, t, i]
            total = np.float32(0.0)
            for i in range(V):
                probs[b, t, i] = math.exp(logits[b, t, i] - maxval)
                total += probs[b, t, i]
            for i in range(V):
                probs[b, t, i] /= total
            for i in range(V, Vp):
                probs[b, t, i] = np.float32(0.0)
