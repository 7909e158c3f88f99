"""The parallel backend: the serial kernels, split over a static pool of K workers."""

from .kernels import (attention_forward, chunk, encoder_forward, gelu_forward, layernorm_forward,
                      matmul_forward, residual_forward, softmax_forward)

__all__ = ["encoder_forward", "layernorm_forward", "matmul_forward", "attention_forward",
           "gelu_forward", "residual_forward", "softmax_forward", "chunk"]
