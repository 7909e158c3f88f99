"""The GPT-2 forward pass, written once: llm.c's gpt2_forward over any backend's kernels.

A backend (backends.py: `serial`, `parallel`, `gpu`) is a module that exposes the functions
named in KERNELS with llm.c's signatures, and, if its kernels keep their data elsewhere, a
`memory` (backends.HostMemory). The driver owns the activation buffers, among them the KV cache, and
calls the kernels layer by layer; it does no arithmetic of its own.
"""

import math
import time

import numpy as np

from .backends import HostMemory, memory_of
from .errors import need_memory
from .sampler import Sampler

# the kernels gpt2_forward calls; every backend also has residual_forward, llm.c's, which
# fused_residual_forward's definition (serial/) composes with layernorm_forward
KERNELS = ("encoder_forward", "layernorm_forward", "matmul_forward", "attention_forward",
           "gelu_forward", "fused_residual_forward", "softmax_forward")


def activation_table(config, B, Tq, T, all_logits=True):
    """[(name, shape)] of the buffers a forward over Tq new of T positions needs (logits
    at the last position only unless `all_logits`). Unlike llm.c's training code, the
    layers share one set of buffers (inference keeps no history) except `qkv`, which
    keeps every layer's keys and values: the KV cache."""
    L, C, NH, Vp = config.num_layers, config.channels, config.num_heads, config.padded_vocab_size
    return [
        ("qkv", (L, B, T, 3 * C)),  # the query, key and value vectors of every position
        ("residual", (B, Tq, C)),  # the residual stream, entering a layer
        ("ln1", (B, Tq, C)), ("ln1_mean", (B, Tq)), ("ln1_rstd", (B, Tq)),
        ("preatt", (B, NH, Tq, T)), ("att", (B, NH, Tq, T)),
        ("atty", (B, Tq, C)),
        ("attproj", (B, Tq, C)),
        ("residual2", (B, Tq, C)),  # the stream after attention
        ("ln2", (B, Tq, C)), ("ln2_mean", (B, Tq)), ("ln2_rstd", (B, Tq)),
        ("fch", (B, Tq, 4 * C)), ("fch_gelu", (B, Tq, 4 * C)),
        ("fcproj", (B, Tq, C)),
        ("lnf", (B, Tq, C)), ("lnf_mean", (B, Tq)), ("lnf_rstd", (B, Tq)),
        ("logits", (B, Tq if all_logits else 1, Vp)), ("probs", (B, Tq if all_logits else 1, Vp)),
    ]


class Activations:
    """Buffers for up to B x maxT positions, allocated once. `shaped(B, Tq, T)` views
    them with the shapes for Tq new of T positions, contiguous as the kernels expect
    (the cache's view `qkv[l]` of its first T positions is, for B = 1). kv_dtype "bf16"
    keeps the cache, qkv, in bfloat16 bits (uint16), every other buffer float32. Without
    `all_logits`, they hold the logits of one position (gpt2_forward's last_only): a
    long context's generation needs no Tq x vocabulary rows."""

    def __init__(self, config, B, maxT, zeros=HostMemory.zeros, all_logits=True, kv_dtype="fp32"):
        self.config, self.all_logits = config, all_logits
        table = activation_table(config, B, maxT, maxT, all_logits)
        need_memory(4 * sum(math.prod(shape) for _, shape in table), f"{B} x {maxT} positions' activations")
        self.flat = {name: zeros(math.prod(shape)) for name, shape in table if name != "qkv"}
        qkv_values = math.prod(dict(table)["qkv"])
        # the cache in bfloat16 bits: the matmul rounds into it, attention widens from it
        # (weights.stored, weights.as_float); the CPU backends' only (backends.kv_dtype_problem)
        self.flat["qkv"] = zeros(qkv_values) if kv_dtype == "fp32" else np.zeros(qkv_values, np.uint16)
        self.qkv = self.flat["qkv"].reshape(config.num_layers, B, maxT, 3 * config.channels)

    def logits_of(self, probs):
        """The logits from which gpt2_forward computed `probs` (the view it returned)."""
        return self.flat["logits"][:probs.size].reshape(probs.shape)

    def shaped(self, B, Tq, T):
        views = {name: self.flat[name][:math.prod(shape)].reshape(shape)
                 for name, shape in activation_table(self.config, B, Tq, T, self.all_logits) if name != "qkv"}
        views["qkv"] = self.qkv[:, :, :T]
        return views


def gpt2_forward(kernels, params, config, acts, inputs, B, T, T0=0, last_only=False):
    """Runs positions T0..T-1 of inputs (B,T) int32 and returns probs (B,Tq,Vp), the
    next-token distribution at each of those Tq = T - T0 positions, or at the last one
    only if `last_only` (the last layer then runs past its keys and values for that
    position alone). Positions before T0 must have run through the same `acts` before:
    their keys and values are in its cache. T0 = 0 and all logits is llm.c's
    gpt2_forward, what gpt.c runs every step. `kernels` is a backend module, `params` a
    checkpoint's tensors."""
    if not (last_only or acts.all_logits):
        raise ValueError("these activations hold one position's logits: last_only=True")
    V, Vp = config.vocab_size, config.padded_vocab_size
    L, NH, C = config.num_layers, config.num_heads, config.channels
    Tq = T - T0
    p, a = params, acts.shaped(B, Tq, T)
    N = B * Tq * C  # the residual and gelu kernels see flat arrays, as llm.c's float*

    # wpe from T0 on: the encoder's position t is position T0 + t
    kernels.encoder_forward(a["residual"], inputs[:, T0:T], p["wte"], p["wpe"][T0:], B, Tq, C)
    # the first layer's layernorm; each later one is fused with the residual before it
    kernels.layernorm_forward(a["ln1"], a["ln1_mean"], a["ln1_rstd"], a["residual"], p["ln1w"][0], p["ln1b"][0],
                              B, Tq, C)
    for l in range(L):
        qkv = a["qkv"][l]  # (B,T,3C); positions before T0 come from the cache
        kernels.matmul_forward(qkv[:, T0:], a["ln1"], p["qkvw"][l], p["qkvb"][l], B, Tq, C, 3 * C)
        if l == L - 1 and last_only and B == 1 and Tq > 1:
            # the last layer's keys and values are cached; the rest of it feeds only the
            # LM head, which reads the last position: from here on, that position alone
            # (as llama.cpp's graph does), in views of one position whose residual is the
            # last row of the Tq (contiguous for B = 1, generation's only batch)
            residual = a["residual"][:, -1:]
            Tq, N, a = 1, C, acts.shaped(B, 1, T)
            a["residual"] = residual
        kernels.attention_forward(a["atty"], a["preatt"], a["att"], qkv, B, T, C, NH)
        kernels.matmul_forward(a["attproj"], a["atty"], p["attprojw"][l], p["attprojb"][l], B, Tq, C, C)
        kernels.fused_residual_forward(a["residual2"], a["ln2"], a["ln2_mean"], a["ln2_rstd"], a["residual"],
                                       a["attproj"], p["ln2w"][l], p["ln2b"][l], B * Tq, C)
        kernels.matmul_forward(a["fch"], a["ln2"], p["fcw"][l], p["fcb"][l], B, Tq, C, 4 * C)
        kernels.gelu_forward(a["fch_gelu"].reshape(4 * N), a["fch"].reshape(4 * N), 4 * N)
        kernels.matmul_forward(a["fcproj"], a["fch_gelu"], p["fcprojw"][l], p["fcprojb"][l], B, Tq, 4 * C, C)
        # the next layer's input (residual2 is not read again, so no copy is needed) and
        # its layernorm; after the last layer, the final layernorm
        ln, w, b = ("ln1", p["ln1w"][l + 1], p["ln1b"][l + 1]) if l + 1 < L else ("lnf", p["lnfw"], p["lnfb"])
        kernels.fused_residual_forward(a["residual"], a[ln], a[ln + "_mean"], a[ln + "_rstd"], a["residual2"],
                                       a["fcproj"], w, b, B * Tq, C)
    if last_only:  # sampling needs the last position: skip the LM head for the others
        Tl, lnf = 1, a["lnf"][:, -1:]
        logits, probs = a["logits"][:, :1], a["probs"][:, :1]
    else:
        Tl, lnf = Tq, a["lnf"]
        logits, probs = a["logits"], a["probs"]
    kernels.matmul_forward(logits, lnf, p["wte"], None, B, Tl, C, Vp)
    kernels.softmax_forward(probs, logits, B, Tl, V, Vp)
    return probs


class Generator:
    """A model ready to complete prompts: the weights where the kernels read them and
    the activation buffers, made once and reused by every completion (gpt --stdin)."""

    def __init__(self, kernels, checkpoint, n, recompute=False, sampler=None, kv_dtype="fp32"):
        self.kernels, self.config, self.n, self.recompute = kernels, checkpoint.config, n, recompute
        self.memory = memory_of(kernels)
        self.params = self.memory.upload(checkpoint.params)  # the GPU's copy of the weights, made once
        self.acts = Activations(self.config, 1, n - 1, self.memory.zeros, all_logits=recompute, kv_dtype=kv_dtype)
        self.sampler = sampler or Sampler()
        self.inputs = np.zeros((1, n), dtype=np.int32)
        self.context = 0  # the tokens of the last completion: its prompt and the tokens it yielded
        self.cached = 0  # positions whose keys and values are in acts

    def complete(self, tokens, n=None, more=False):
        """Yields the tokens that follow `tokens` until the context holds n (default
        self.n, at most self.n) tokens, one forward pass each. With `more`, `tokens`
        continue the last completion's context (its prompt and the tokens it yielded),
        whose keys and values are still in the cache: only the new positions run.
        recompute: run the whole prefix every step, with logits at every position, as
        gpt.c does. Otherwise the prompt runs once and each later step runs only the new
        position against the KV cache, with logits at the last position only: same
        math, same tokens."""
        config, n = self.config, min(n or self.n, self.n)
        start = self.context if more else 0
        if start + len(tokens) >= n:
            raise ValueError(f"{start + len(tokens)} tokens leave no room in a context of {n}")
        if not more:
            self.cached = 0
        inputs = self.inputs
        inputs[0, start:start + len(tokens)] = tokens
        self.context = start + len(tokens)
        self.sampler.start()
        for t in range(self.context, n):
            started = time.perf_counter()
            if self.recompute:
                probs = gpt2_forward(self.kernels, self.params, config, self.acts, inputs, 1, t)
            else:
                probs = gpt2_forward(self.kernels, self.params, config, self.acts, inputs, 1, t, self.cached,
                                     last_only=True)
                self.cached = t
            # gpt.c's coin reads the probabilities; temperature, top-k and top-p the logits
            logits = None if self.sampler.fixed_coin else self.memory.to_host(self.acts.logits_of(probs)[0, -1])
            chosen = time.perf_counter()
            next_token = self.sampler.next_token(self.memory.to_host(probs[0, -1]), logits, config.vocab_size)
            if isinstance(self.kernels, ProfiledKernels):
                now = time.perf_counter()
                self.kernels.add_step(now - started, now - chosen)
            inputs[0, t] = next_token
            self.context = t + 1
            yield next_token


def generate(kernels, checkpoint, tokens, n, recompute=False, sampler=None, kv_dtype="fp32"):
    """The tokens that follow `tokens`, n in all: a Generator made for one completion."""
    return Generator(kernels, checkpoint, n, recompute, sampler, kv_dtype).complete(tokens)


class ProfiledKernels:
    """A backend whose kernels also add up the time they take, per kernel (--profile),
    and whose Generator reports each step's time and its sampler's. A kernel's first
    call, and the first step, are counted apart: they load (or compile) machine code."""

    def __init__(self, kernels):
        self.kernels, self.first, self.rest, self.calls = kernels, {}, {}, {}
        self.memory = memory_of(kernels)
        self.steps, self.step_seconds, self.sampler_seconds = 0, 0.0, 0.0

    def __getattr__(self, name):
        kernel = getattr(self.kernels, name)
        if name not in KERNELS:
            return kernel

        def timed(*args):
            start = time.perf_counter()
            kernel(*args)
            self.memory.synchronize()  # GPU launches return at once: time the work
            seconds = time.perf_counter() - start
            if name in self.first:
                self.rest[name] = self.rest.get(name, 0.0) + seconds
            else:
                self.first[name] = seconds
            self.calls[name] = self.calls.get(name, 0) + 1

        return timed

    def regions(self):
        """The parallel regions the backend's kernels have started (0 if it has no pool)."""
        counter = getattr(self.kernels, "regions_started", None)
        return counter() if counter else 0

    def add_step(self, seconds, sampler_seconds):
        """A generation step took `seconds`, of which the sampler `sampler_seconds`; the
        first step is the one that loads every kernel, and is left out."""
        if self.steps == 0:
            self.kernel_seconds_before, self.calls_before = sum(self.rest.values()), sum(self.calls.values())
            self.regions_before = self.regions()
        else:
            self.step_seconds += seconds
            self.sampler_seconds += sampler_seconds
        self.steps += 1

    def report(self):
        rest = sum(self.rest.values())
        width = max(map(len, KERNELS)) + 2
        lines = [f"{'kernel':<{width}}{'calls':>6}{'first ms':>10}{'rest ms':>10}{'rest %':>8}"]
        for name in sorted(self.calls, key=lambda k: self.rest.get(k, 0.0), reverse=True):
            ms = 1e3 * self.rest.get(name, 0.0)
            lines.append(f"{name:<{width}}{self.calls[name]:>6}{1e3 * self.first[name]:>10.1f}{ms:>10.1f}"
                         f"{100 * ms / max(1e3 * rest, 1e-9):>8.1f}")
        lines.append(f"{'total':<{width}}{sum(self.calls.values()):>6}{1e3 * sum(self.first.values()):>10.1f}"
                     f"{1e3 * rest:>10.1f}{100.0:>8.1f}")
        lines.append("first: each kernel's first call, which loads its compiled code; rest: the others")
        if self.steps > 1:
            lines.extend(self.step_report())
        return "\n".join(lines)

    def step_report(self):
        """Where the steps after the first went: the kernels (and, inside them, the pool's
        fork and join), the sampler, and the Python between."""
        steps = self.steps - 1
        kernels = sum(self.rest.values()) - self.kernel_seconds_before
        calls = sum(self.calls.values()) - self.calls_before
        python = self.step_seconds - kernels - self.sampler_seconds
        per_step = lambda seconds: f"{1e3 * seconds / steps:8.3f} ms {100 * seconds / self.step_seconds:5.1f}%"  # noqa: E731
        lines = [f"a step after the first, mean of {steps}: {1e3 * self.step_seconds / steps:.3f} ms",
                 f"  kernels ({calls // steps} calls)     {per_step(kernels)}"]
        fork_join = getattr(self.kernels, "fork_join_seconds", None)
        if fork_join:  # an empty parallel region, timed now: what each region the kernels start pays
            region, regions = fork_join(), self.regions() - self.regions_before
            lines.append(f"    of which fork/join   {per_step(min(kernels, region * regions))}"
                         f"  ({1e6 * region:.1f} us an empty parallel region, x {regions // steps})")
        lines += [f"  sampler               {per_step(self.sampler_seconds)}",
                  f"  Python between        {per_step(python)}"]
        return lines
