"""The full convolution as a matmul of patches (the CPU stem) equals XLA's convolution: forward and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mnet_jax.ops import conv

TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}  # relative to the largest value of the compared array


def xla_conv(x, kernel, stride):
  return lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def loss_and_grads(conv_fn, x, kernel, stride, weights):
  loss = lambda x, kernel: jnp.sum(conv_fn(x, kernel, stride).astype(jnp.float32) * weights)  # noqa: E731
  return conv_fn(x, kernel, stride), jax.grad(loss, argnums=(0, 1))(x, kernel)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height,width", [(7, 8), (9, 13), (32, 32)])
def test_patches_equal_xla_convolution(height, width, stride, dtype):
  kx, kk, kw = jax.random.split(jax.random.key(height * 100 + width * 10 + stride), 3)
  x = jax.random.normal(kx, (2, height, width, 3)).astype(dtype)
  kernel = jax.random.normal(kk, (3, 3, 3, 5)).astype(dtype)
  weights = jax.random.normal(kw, (2, -(-height // stride), -(-width // stride), 5))
  cpu_conv = lambda x, kernel, stride: conv.full_conv(x, kernel, stride, "cpu")  # noqa: E731
  actual = jax.jit(loss_and_grads, static_argnums=(0, 3))(cpu_conv, x, kernel, stride, weights)
  expected = jax.jit(loss_and_grads, static_argnums=(0, 3))(xla_conv, x, kernel, stride, weights)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype and a.shape == e.shape
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    np.testing.assert_allclose(a, e, rtol=0, atol=TOLERANCE[dtype] * float(np.abs(e).max()))


def test_cpu_stem_is_a_matmul_and_wide_or_portable_convolutions_stay_convolutions():
  def hlo(in_channels, kernels="cpu"):
    x, kernel = jnp.ones((1, 8, 8, in_channels)), jnp.ones((3, 3, in_channels, 4))
    return jax.jit(conv.full_conv, static_argnums=(2, 3)).lower(x, kernel, 2, kernels).as_text()
  assert "convolution" not in hlo(3) and "dot_general" in hlo(3)
  assert "convolution" in hlo(conv.MAX_PATCH_IN_CHANNELS + 1)
  assert "convolution" in hlo(3, "portable")
