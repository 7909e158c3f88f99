"""The parallel backend: the serial kernels (model.KERNELS), split over a static pool of K
workers; `chunk`, the split; `set_workers`, the pool's size; `fork_join_seconds`, what a
parallel region costs, and `regions_started`, how many the kernels started."""

from .kernels import (attention_forward, chunk, encoder_forward, fork_join_seconds, fused_residual_forward,  # noqa: F401
                      gelu_forward, layernorm_forward, matmul_forward, regions_started, residual_forward, set_workers,
                      softmax_forward)
