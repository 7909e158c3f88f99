"""The serial backend: llm.c's kernels, one function each, the reference for the others."""

from .kernels import (attention_forward, encoder_forward, gelu_forward, layernorm_forward,
                      matmul_forward, residual_forward, softmax_forward)

__all__ = ["encoder_forward", "layernorm_forward", "matmul_forward", "attention_forward",
           "gelu_forward", "residual_forward", "softmax_forward"]
