"""The GPU backend (`gpt --backend cuda`): the serial kernels' names and signatures as
numba.cuda kernels, and `memory`, which keeps the weights and activations on the device."""

from .kernels import (attention_forward, encoder_forward, gelu_forward, layernorm_forward, matmul_forward,
                      memory, residual_forward, softmax_forward)

__all__ = ["encoder_forward", "layernorm_forward", "matmul_forward", "attention_forward",
           "gelu_forward", "residual_forward", "softmax_forward", "memory"]
