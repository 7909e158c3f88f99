"""The serial backend: llm.c's kernels (model.KERNELS), one function each, the
specification and the reference for the other backends."""

from .kernels import (attention_forward, encoder_forward, gelu_forward, layernorm_forward,  # noqa: F401
                      matmul_forward, residual_forward, softmax_forward)
