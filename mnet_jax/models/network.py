"""The Flax layers every family is built from, and `apply_layers`, which runs a family's layer spec (spec.py).

Parameters are float32 whatever the compute dtype. A conv layer holds `kernel` and `bn` (scale, bias; batch_stats
mean, var); a squeeze-excite layer `reduce` and `expand` (kernel, bias each); an fc layer `kernel` and `bias`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mnet_jax.errors import ConfigError
from mnet_jax.models.spec import check_choice, check_resolution
from mnet_jax.ops import resolve_kernels
from mnet_jax.ops.batchnorm import BatchNormAct, activation_fn
from mnet_jax.ops.conv import full_conv
from mnet_jax.ops.depthwise import mixed_depthwise_conv, resolve_impl, spatial_depthwise_conv
from mnet_jax.ops.pointwise import channel_shuffle, grouped_pointwise_conv
from mnet_jax.ops.activations import hard_sigmoid


class ConvBN(nn.Module):
  """A conv layer of any kind (no bias), then BatchNorm and the activation (batchnorm.py), then the channel shuffle
  where the layer has one; `kernels` is the resolved kernel set and `depthwise_impl` the resolved depthwise
  implementation. A spatially factorized depthwise layer holds `kernel_v` (k, 1, 1, C) and `kernel_h` (1, k, 1, C)."""

  layer: Any
  activation: str
  bn_momentum: float
  bn_epsilon: float
  dtype: Any
  kernels: str
  depthwise_impl: str

  @nn.compact
  def __call__(self, x, train):
    layer = self.layer
    init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
    if layer.kind == "depthwise" and layer.factorization == "spatial":
      (k, c), = layer.groups
      kernel_v = self.param("kernel_v", init, (k, 1, 1, c), jnp.float32).astype(self.dtype)
      kernel_h = self.param("kernel_h", init, (1, k, 1, c), jnp.float32).astype(self.dtype)
      x = spatial_depthwise_conv(x, kernel_v, kernel_h, layer.stride, self.depthwise_impl)
    elif layer.kind == "depthwise":
      # One kernel "kernel" of shape (k, k, 1, C) for a vanilla layer, else "kernel_0", "kernel_1", ... per group.
      names = ["kernel"] if len(layer.groups) == 1 else [f"kernel_{i}" for i in range(len(layer.groups))]
      group_kernels = [self.param(name, init, (k, k, 1, c), jnp.float32).astype(self.dtype)
                       for name, (k, c) in zip(names, layer.groups)]
      x = mixed_depthwise_conv(x, group_kernels, layer.stride, self.depthwise_impl)
    else:
      # A grouped 1x1 conv's kernel is (1, 1, C_in / g, C_out), as a conv with feature_group_count=g holds it.
      groups = layer.pointwise_groups
      kernel = self.param("kernel", init, (layer.kernel_size, layer.kernel_size, layer.in_channels // groups,
                                           layer.out_channels), jnp.float32)
      kernel = kernel.astype(self.dtype)
      if layer.kind == "pointwise":
        x = grouped_pointwise_conv(x, kernel[0, 0], groups, self.kernels)
      else:
        x = full_conv(x, kernel, layer.stride, self.kernels)
    x = BatchNormAct(self.activation, self.bn_momentum, self.bn_epsilon, self.dtype, self.kernels,
                     name="bn")(x, train)
    return channel_shuffle(x, layer.pointwise_groups) if layer.shuffle else x


class SqueezeExcite(nn.Module):
  """x * hard_sigmoid(expand(relu(reduce(mean over space of x)))), the 1x1 convs as Dense layers with biases."""

  layer: Any
  dtype: Any

  @nn.compact
  def __call__(self, x):
    squeezed = jnp.mean(x, axis=(1, 2))
    squeezed = nn.relu(nn.Dense(self.layer.se_channels, dtype=self.dtype, param_dtype=jnp.float32,
                                name="reduce")(squeezed))
    gate = hard_sigmoid(nn.Dense(self.layer.out_channels, dtype=self.dtype, param_dtype=jnp.float32,
                                 name="expand")(squeezed))
    return x * gate.astype(x.dtype)[:, None, None, :]


def apply_layers(layers, images, train, *, activation, dropout_rate, bn_momentum, bn_epsilon, dtype, kernels,
                 depthwise_impl):
  """Runs `layers` on images (N, H, W, 3) inside the calling module's compact method: feature layers, global
  average pooling, fc layers with dropout before the last; returns float32 logits. `activation` is the one of
  layers whose own is ''."""
  x = images.astype(dtype)
  inputs = {}
  features = [layer for layer in layers if layer.kind != "fc"]
  *hidden, classifier = [layer for layer in layers if layer.kind == "fc"]
  for layer in features:
    inputs[layer.name] = x
    if layer.kind == "squeeze_excite":
      x = SqueezeExcite(layer, dtype, name=layer.name)(x)
    else:
      x = ConvBN(layer, layer.activation or activation, bn_momentum, bn_epsilon, dtype, kernels, depthwise_impl,
                 name=layer.name)(x, train)
    if layer.residual_from:
      x = x + inputs[layer.residual_from]
  x = jnp.mean(x, axis=(1, 2))
  for layer in hidden:
    x = nn.Dense(layer.out_channels, dtype=dtype, param_dtype=jnp.float32, name=layer.name)(x)
    x = activation_fn(layer.activation or activation)(x)
  x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  x = nn.Dense(classifier.out_channels, dtype=dtype, param_dtype=jnp.float32, name=classifier.name)(x)
  return x.astype(jnp.float32)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def checked_call_options(images, dtype, dropout_rate, kernels, depthwise_impl):
  """Checks what a family module's call gets; returns (compute dtype, resolved kernel set, depthwise form)."""
  check_choice("dtype", dtype, tuple(DTYPES))
  kernels = resolve_kernels(kernels)
  depthwise_impl = resolve_impl(depthwise_impl, kernels)
  if not 0 <= dropout_rate < 1:
    raise ConfigError(f"dropout_rate={dropout_rate!r} is not allowed: it must be in [0, 1)")
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ConfigError(f"images of shape {images.shape} are not allowed: expected (batch, height, width, 3)")
  for size in images.shape[1:3]:
    check_resolution(size)
  return DTYPES[dtype], kernels, depthwise_impl
