"""The pointwise conv's hand-written gradient equals autodiff of the plain matmul."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax.ops.pointwise import _pointwise_conv_cpu, pointwise_conv


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("bfloat16", 1e-2)])
def test_gradients_equal_autodiff_of_the_matmul(dtype, tolerance):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 5, 6)).astype(dtype)
  kernel = jax.random.normal(jax.random.PRNGKey(1), (6, 4)).astype(dtype)
  weights = jax.random.normal(jax.random.PRNGKey(2), (3, 7, 5, 4))

  def loss(conv):
    return lambda x, k: jnp.sum(weights * jnp.tanh(conv(x, k).astype(jnp.float32)))

  expected = jax.jit(jax.value_and_grad(loss(jnp.dot), argnums=(0, 1)))(x, kernel)
  actual = jax.jit(jax.value_and_grad(loss(_pointwise_conv_cpu), argnums=(0, 1)))(x, kernel)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype and a.shape == e.shape
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    np.testing.assert_allclose(a, e, rtol=0, atol=tolerance * float(np.abs(e).max()))


def test_cpu_kernels_use_the_hand_written_gradient():
  x, kernel = jnp.ones((2, 3)), jnp.ones((3, 4))

  def hlo(kernels):
    return jax.jit(jax.grad(lambda k: pointwise_conv(x, k, kernels).sum())).lower(kernel).as_text()
  assert "opt-barrier" in hlo("cpu") or "optimization_barrier" in hlo("cpu")
  assert "opt-barrier" not in hlo("portable") and "optimization_barrier" not in hlo("portable")
