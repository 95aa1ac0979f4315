"""Depthwise 3x3 convolution, one filter per channel, with TF 'SAME' padding.

Every implementation takes the same kernel of shape (k, k, 1, C) (the layout of a conv with
feature_group_count=C), so parameters and checkpoints do not depend on the choice.
"""

import jax.numpy as jnp
from jax import lax

from mnet_jax.errors import ConfigError


def same_padding(size, kernel_size, stride):
  """TF 'SAME' padding (low, high) of one spatial axis: the extra pixel goes bottom/right."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


def depthwise_xla(x, kernel, stride):
  """The reference form: a grouped convolution with one group per channel."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def depthwise_shifted(x, kernel, stride):
  """k*k shifted, strided slices of the padded input, each scaled per channel and summed."""
  k = kernel.shape[0]
  _, h, w, _ = x.shape
  pad_h, pad_w = same_padding(h, k, stride), same_padding(w, k, stride)
  x = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  out_h, out_w = -(-h // stride), -(-w // stride)
  out = None
  for i in range(k):
    for j in range(k):
      window = lax.slice(
          x, (0, i, j, 0), (x.shape[0], i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, x.shape[3]),
          (1, stride, stride, 1))
      term = window * kernel[i, j, 0][None, None, None, :]
      out = term if out is None else out + term
  return out


IMPLEMENTATIONS = {"xla": depthwise_xla, "shifted": depthwise_shifted}


def check_impl(impl):
  if impl not in IMPLEMENTATIONS:
    raise ConfigError(f"depthwise_impl={impl!r} is unknown; allowed: {', '.join(IMPLEMENTATIONS)}")


def depthwise_conv(x, kernel, stride, impl="xla"):
  check_impl(impl)
  return IMPLEMENTATIONS[impl](x, kernel, stride)
