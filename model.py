"""The GPT-2 forward pass, written once: llm.c's gpt2_forward over any backend's kernels.

A backend is a module (`serial`, later `parallel` and `gpu`) that exposes the functions
named in KERNELS with llm.c's signatures. The driver owns the activation buffers and
calls the kernels layer by layer; it does no arithmetic of its own.
"""

import importlib

import numpy as np

KERNELS = ("encoder_forward", "layernorm_forward", "matmul_forward", "attention_forward",
           "gelu_forward", "residual_forward", "softmax_forward")
BACKENDS = ("serial",)


def load_backend(name):
    """The kernel module of a backend; imported on demand (numba's import is not free)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    return importlib.import_module(name)


def activation_table(config, B, T):
    """[(name, shape)] of the buffers one forward over B x T positions needs. Unlike
    llm.c's training code, the layers share one set: inference keeps no history."""
    C, NH, Vp = config.channels, config.num_heads, config.padded_vocab_size
    return [
        ("residual", (B, T, C)),  # the residual stream, entering a layer
        ("ln1", (B, T, C)), ("ln1_mean", (B, T)), ("ln1_rstd", (B, T)),
        ("qkv", (B, T, 3 * C)),
        ("preatt", (B, NH, T, T)), ("att", (B, NH, T, T)),
        ("atty", (B, T, C)),
        ("attproj", (B, T, C)),
        ("residual2", (B, T, C)),  # the stream after attention
        ("ln2", (B, T, C)), ("ln2_mean", (B, T)), ("ln2_rstd", (B, T)),
        ("fch", (B, T, 4 * C)), ("fch_gelu", (B, T, 4 * C)),
        ("fcproj", (B, T, C)),
        ("lnf", (B, T, C)), ("lnf_mean", (B, T)), ("lnf_rstd", (B, T)),
        ("logits", (B, T, Vp)), ("probs", (B, T, Vp)),
    ]


class Activations:
    """Buffers for up to B x maxT positions, allocated once. `shaped(B, T)` views their
    first elements with the shapes for T positions, contiguous as the kernels expect."""

    def __init__(self, config, B, maxT):
        self.config = config
        self.flat = {name: np.zeros(int(np.prod(shape)), dtype=np.float32)
                     for name, shape in activation_table(config, B, maxT)}

    def shaped(self, B, T):
        return {name: self.flat[name][:int(np.prod(shape))].reshape(shape)
                for name, shape in activation_table(self.config, B, T)}


def gpt2_forward(kernels, params, config, acts, inputs, B, T):
    """inputs (B,T) int32 token ids -> probs (B,T,Vp), the next-token distribution at
    every position. `kernels` is a backend module, `params` a checkpoint's tensors."""
    V, Vp = config.vocab_size, config.padded_vocab_size
    L, NH, C = config.num_layers, config.num_heads, config.channels
    p, a = params, acts.shaped(B, T)
    N = B * T * C  # the residual and gelu kernels see flat arrays, as llm.c's float*

    kernels.encoder_forward(a["residual"], inputs, p["wte"], p["wpe"], B, T, C)
    for l in range(L):
        kernels.layernorm_forward(a["ln1"], a["ln1_mean"], a["ln1_rstd"], a["residual"],
                                  p["ln1w"][l], p["ln1b"][l], B, T, C)
        kernels.matmul_forward(a["qkv"], a["ln1"], p["qkvw"][l], p["qkvb"][l], B, T, C, 3 * C)
        kernels.attention_forward(a["atty"], a["preatt"], a["att"], a["qkv"], B, T, C, NH)
        kernels.matmul_forward(a["attproj"], a["atty"], p["attprojw"][l], p["attprojb"][l], B, T, C, C)
        kernels.residual_forward(a["residual2"].reshape(N), a["residual"].reshape(N),
                                 a["attproj"].reshape(N), N)
        kernels.layernorm_forward(a["ln2"], a["ln2_mean"], a["ln2_rstd"], a["residual2"],
                                  p["ln2w"][l], p["ln2b"][l], B, T, C)
        kernels.matmul_forward(a["fch"], a["ln2"], p["fcw"][l], p["fcb"][l], B, T, C, 4 * C)
        kernels.gelu_forward(a["fch_gelu"].reshape(4 * N), a["fch"].reshape(4 * N), 4 * N)
        kernels.matmul_forward(a["fcproj"], a["fch_gelu"], p["fcprojw"][l], p["fcprojb"][l], B, T, 4 * C, C)
        # the next layer's input; residual2 is not read again, so no copy is needed
        kernels.residual_forward(a["residual"].reshape(N), a["residual2"].reshape(N),
                                 a["fcproj"].reshape(N), N)
    kernels.layernorm_forward(a["lnf"], a["lnf_mean"], a["lnf_rstd"], a["residual"],
                              p["lnfw"], p["lnfb"], B, T, C)
    kernels.matmul_forward(a["logits"], a["lnf"], p["wte"], None, B, T, C, Vp)
    kernels.softmax_forward(a["probs"], a["logits"], B, T, V, Vp)
    return a["probs"]
