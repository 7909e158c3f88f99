"""The GPU backend (`gpt --backend cuda`): the serial kernels (model.KERNELS) as numba.cuda
kernels, and `memory`, which keeps the weights and activations on the device."""

from .kernels import (attention_forward, encoder_forward, fused_residual_forward, gelu_forward,  # noqa: F401
                      layernorm_forward, matmul_forward, memory, residual_forward, softmax_forward)
