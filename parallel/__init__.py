"""The parallel backend: the serial kernels (model.KERNELS), split over a static pool of K
workers, and `chunk`, the split."""

from .kernels import (attention_forward, chunk, encoder_forward, gelu_forward, layernorm_forward,  # noqa: F401
                      matmul_forward, residual_forward, softmax_forward)
