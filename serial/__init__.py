"""The serial backend: llm.c's kernels (model.KERNELS), one function each, the
specification and the reference for the other backends."""

from .kernels import (attention_forward, encoder_forward, fused_residual_forward, gelu_forward,  # noqa: F401
                      layernorm_forward, matmul_forward, residual_forward, softmax_forward)
