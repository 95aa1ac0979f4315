"""The full k x k convolution (the stem, and every layer of the 'full_conv' ablation): TF 'SAME' padding, HWIO kernel.

On CPU a convolution over few input channels (the stem's 3) runs as a 1x1 convolution (pointwise.py) of its
patches, the k*k*C_in input values each output position reads, with the kernel reshaped to (k*k*C_in, C_out).
XLA:CPU's own convolution was slower at the stem's shapes, its kernel gradient (a convolution with a 112x112
window at 224 px) most of all (docs/performance.md). Wider inputs keep XLA's convolution: their patches would be
k*k times the activation. The portable kernel set (GPU, TPU) uses XLA's convolution: the patches were not
measured there.
"""

import jax.numpy as jnp
from jax import lax

from mnet_jax.ops.depthwise import pad_same, windows
from mnet_jax.ops.pointwise import pointwise_conv

MAX_PATCH_IN_CHANNELS = 4


def full_conv(x, kernel, stride, kernels):
  """x (N, H, W, C_in) convolved with kernel (k, k, C_in, C_out), in the form of kernel set `kernels`."""
  k, _, in_channels, out_channels = kernel.shape
  if kernels == "cpu" and in_channels <= MAX_PATCH_IN_CHANNELS:
    return pointwise_conv(patches(x, k, stride), kernel.reshape(k * k * in_channels, out_channels), kernels)
  return lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def patches(x, k, stride):
  """(N, H_out, W_out, k*k*C): at each output position the k x k window it reads, in the kernel's (i, j, c) order."""
  n, h, w, c = x.shape
  out_h, out_w = -(-h // stride), -(-w // stride)
  taps = [window for _, _, window in windows(pad_same(x, k, stride), k, stride, out_h, out_w)]
  return jnp.stack(taps, axis=3).reshape(n, out_h, out_w, k * k * c)  # XLA:CPU stacks faster than it concatenates
