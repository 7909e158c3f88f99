"""The parallel backend: the serial kernels (model.KERNELS), split over a static pool of K
workers; `chunk`, the split; and `fork_join_seconds`, what a parallel region costs."""

from .kernels import (attention_forward, chunk, encoder_forward, fork_join_seconds, gelu_forward, layernorm_forward,  # noqa: F401
                      matmul_forward, residual_forward, softmax_forward)
