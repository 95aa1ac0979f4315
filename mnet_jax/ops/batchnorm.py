"""BatchNorm followed by the activation (ReLU, ReLU6, hard-swish or none), with nn.BatchNorm's variables and arithmetic.

`BatchNormAct` holds the same variables under the same names as `flax.linen.BatchNorm` (params `scale`, `bias`;
batch_stats `mean`, `var`), so checkpoints do not depend on how it computes. In training it normalises with the
batch's mean and two-pass variance, in float32, and updates the running averages as nn.BatchNorm does.

Two forms compute the training step, one per kernel set (ops/__init__.py):
- `batch_norm_act_reference` ('portable'): nn.BatchNorm's formulas in plain JAX, differentiated by autodiff.
- `batch_norm_act_cpu` ('cpu'): the same forward and its hand-written gradient, with the per-channel sums (forward
  moments, backward sums) done by the C++ kernels of cpu_kernels.cc, one pass each; XLA:CPU writes out every
  elementwise term it reduces and reads it back (docs/performance.md). Its gradient is written for the
  clipping activations (ReLU, ReLU6); hard-swish and linear layers take the reference form in either set.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mnet_jax.ops import cpu_kernels
from mnet_jax.ops.activations import hard_swish

ACTIVATION_UPPER = {"relu": math.inf, "relu6": 6.0}  # the activation is clip(z, 0, upper)
ACTIVATIONS = ("relu", "relu6", "hard_swish", "linear")


def per_channel(vector, ndim):
  """A (C,) vector shaped to broadcast against a channels-last array of rank ndim."""
  return vector.reshape((1,) * (ndim - 1) + vector.shape)


def activation_fn(name):
  return {"relu": jax.nn.relu, "relu6": jax.nn.relu6, "hard_swish": hard_swish, "linear": lambda x: x}[name]


def normalize_act(x, mean, rstd, scale, bias, activation, dtype):
  """activation((x - mean) * rstd * scale + bias) in nn.BatchNorm's order of operations, cast to dtype."""
  y = (x - per_channel(mean, x.ndim)) * per_channel(rstd * scale, x.ndim) + per_channel(bias, x.ndim)
  return activation_fn(activation)(y.astype(dtype))


def clip_threshold(activation, dtype):
  """The float32 t such that, for float32 z, activation(z.astype(dtype)) passes the gradient iff 0 < z < t: the
  activation's upper bound, lowered to where rounding to dtype reaches it (e.g. 5.984375 for ReLU6 in bfloat16)."""
  upper = ACTIVATION_UPPER[activation]
  if math.isinf(upper) or jnp.dtype(dtype) == jnp.float32:
    return upper
  dtype = jnp.dtype(dtype)
  below = np.nextafter(np.array(upper, dtype), np.array(0, dtype))  # the value of dtype just below upper
  midpoint = (np.float32(below) + np.float32(upper)) / 2  # exact in float32; rounds to upper or below (a tie)
  return float(midpoint if midpoint.astype(dtype) == upper else np.nextafter(midpoint, np.float32(upper)))


def batch_norm_act_reference(x, scale, bias, epsilon, activation):
  """Training-mode BatchNorm and activation as nn.BatchNorm(use_fast_variance=False) computes them.

  The variance is two-pass: the fast E[x^2] - E[x]^2 cancels badly for channels with a large mean (e.g. uniform
  image backgrounds), which made gradients differ by ~1% between reduction orders (1 vs 2 devices).

  Returns (y, batch mean, batch variance), the statistics in float32, y in x's dtype.
  """
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axes)
  var = jnp.mean(jnp.square(x32 - per_channel(mean, x.ndim)), axes)
  return normalize_act(x, mean, lax.rsqrt(var + epsilon), scale, bias, activation, x.dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_act_cpu(x, scale, bias, epsilon, activation):
  """`batch_norm_act_reference` with its per-channel sums in C++ and a hand-written gradient; CPU only."""
  y, mean, var, _ = _cpu_forward(x, scale, bias, epsilon, activation)
  return y, mean, var


def _cpu_forward(x, scale, bias, epsilon, activation):
  channels = x.shape[-1]
  mean, var = cpu_kernels.call("ChannelMoments", ((channels,), (channels,)), x)
  rstd = lax.rsqrt(var + epsilon)
  return normalize_act(x, mean, rstd, scale, bias, activation, x.dtype), mean, var, rstd


def _cpu_forward_saving_inputs(x, scale, bias, epsilon, activation):
  y, mean, var, rstd = _cpu_forward(x, scale, bias, epsilon, activation)
  return (y, mean, var), (x, mean, rstd, scale, bias)


def _cpu_backward(epsilon, activation, saved, cotangents):
  """With xhat = (x - mean) * rstd, z = xhat * scale + bias, y = clip(z, 0, upper) and g = dy where y passes it:
  dbias = sum(g), dscale = sum(g * xhat), and dx = scale * rstd * (g - mean(g) - xhat * mean(g * xhat)), plus the
  terms of the batch statistics' own cotangents (zero when only the running averages use them)."""
  x, mean, rstd, scale, bias = saved
  dy, dmean, dvar = cotangents
  threshold = clip_threshold(activation, x.dtype)
  count = x.size // x.shape[-1]
  sum_g, sum_g_xhat = cpu_kernels.call("BatchNormActGradSums", (2, x.shape[-1]), dy, x, mean, rstd, scale, bias,
                                       upper=np.float32(threshold))
  xhat = (x.astype(jnp.float32) - per_channel(mean, x.ndim)) * per_channel(rstd, x.ndim)
  z = xhat * per_channel(scale, x.ndim) + per_channel(bias, x.ndim)
  g = jnp.where((z > 0) & (z < threshold), dy.astype(jnp.float32), 0.0)
  # dx = coef_g * g + coef_xhat * xhat + coef_1, per channel; d var / d x = 2 (x - mean) / count = 2 xhat / (rstd count)
  coef_g = scale * rstd
  coef_xhat = (2 * dvar / rstd - coef_g * sum_g_xhat) / count
  coef_1 = (dmean - coef_g * sum_g) / count
  dx = (per_channel(coef_g, x.ndim) * g + per_channel(coef_xhat, x.ndim) * xhat + per_channel(coef_1, x.ndim))
  return dx.astype(x.dtype), sum_g_xhat.astype(scale.dtype), sum_g.astype(bias.dtype)


batch_norm_act_cpu.defvjp(_cpu_forward_saving_inputs, _cpu_backward)


def batch_norm_act(x, scale, bias, epsilon, activation, kernels):
  """Training-mode BatchNorm and activation, (y, batch mean, batch variance), in kernel set `kernels`'s form."""
  form = batch_norm_act_cpu if kernels == "cpu" and activation in ACTIVATION_UPPER else batch_norm_act_reference
  return form(x, scale, bias, epsilon, activation)


class BatchNormAct(nn.Module):
  """nn.BatchNorm (over all but the last axis, float32 parameters and statistics) followed by the activation;
  `kernels` is the resolved kernel set, 'portable' or 'cpu'."""

  activation: str
  momentum: float
  epsilon: float
  dtype: Any
  kernels: str = "portable"

  @nn.compact
  def __call__(self, x, train):
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
    if not train:
      rstd = lax.rsqrt(running_var.value + self.epsilon)
      return normalize_act(x, running_mean.value, rstd, scale, bias, self.activation, self.dtype)
    y, mean, var = batch_norm_act(x, scale, bias, self.epsilon, self.activation, self.kernels)
    if not self.is_initializing():
      running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
      running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y
