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


def grouped_pointwise_conv(x, kernel, groups, kernels):
  """x (..., C_in) by a grouped 1x1 conv, kernel (C_in / groups, C_out) in the feature_group_count layout: output
  group i (C_out / groups contiguous channels) reads input group i. 'portable': XLA's grouped convolution; 'cpu': a
  batched matmul over the groups, which XLA:CPU runs as one dot per group (docs/ablations.md#speed)."""
  if groups == 1:
    return pointwise_conv(x, kernel, kernels)
  if kernels == "cpu":
    return grouped_matmul(x, kernel, groups)
  rows = x.reshape(-1, 1, 1, x.shape[-1])
  out = lax.conv_general_dilated(rows, kernel[None, None], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 feature_group_count=groups)
  return out.reshape(*x.shape[:-1], kernel.shape[-1])


def grouped_matmul(x, kernel, groups):
  """The grouped 1x1 conv as a batched matmul: (rows, g, C_in/g) by (g, C_in/g, C_out/g)."""
  per_in, out_channels = kernel.shape
  blocks = kernel.reshape(per_in, groups, out_channels // groups).transpose(1, 0, 2)
  rows = x.reshape(-1, groups, per_in)
  out = lax.dot_general(rows, blocks, (((2,), (1,)), ((1,), (0,))))  # (g, rows, C_out/g)
  return out.transpose(1, 0, 2).reshape(*x.shape[:-1], out_channels)


def channel_shuffle(x, groups):
  """ShuffleNet's channel shuffle: the g groups of C/g contiguous channels interleaved (channel i * C/g + j of the
  input is channel j * g + i of the output); a permutation, no arithmetic."""
  *lead, channels = x.shape
  return x.reshape(*lead, groups, channels // groups).swapaxes(-1, -2).reshape(*lead, channels)
