"""The pointwise (1x1) convolution: a matmul over channels, with a weight gradient that XLA:CPU computes well.

Its gradient is the one autodiff gives, written out so that one optimization barrier can sit before the
weight gradient's dot. Without it XLA:CPU fuses the producer of the output gradient (the BatchNorm backward)
into a copy that writes that gradient transposed for the dot, a cache-hostile pattern that cost more than the
dot itself (docs/performance.md).
The portable kernel set (GPU, TPU) uses the plain dot: that change was not measured there.
"""

import jax
import jax.numpy as jnp
from jax import lax


def pointwise_conv(x, kernel, kernels):
  """x (..., C_in) times kernel (C_in, C_out), in the form of kernel set `kernels` ('portable' or 'cpu')."""
  if kernels == "cpu":
    return _pointwise_conv_cpu(x, kernel)
  return jnp.dot(x, kernel)


@jax.custom_vjp
def _pointwise_conv_cpu(x, kernel):
  return jnp.dot(x, kernel)


def _forward(x, kernel):
  return jnp.dot(x, kernel), (x, kernel)


def _backward(saved, grad):
  x, kernel = saved
  grad_rows = lax.optimization_barrier(grad.reshape(-1, grad.shape[-1]))
  kernel_grad = lax.dot_general(x.reshape(-1, x.shape[-1]), grad_rows, (((0,), (0,)), ((), ())))
  return jnp.dot(grad, kernel.T), kernel_grad.astype(kernel.dtype)


_pointwise_conv_cpu.defvjp(_forward, _backward)
