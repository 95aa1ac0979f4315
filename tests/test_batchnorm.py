"""BatchNormAct equals nn.BatchNorm followed by the activation, and the C++ form equals the plain-JAX one:
outputs, batch statistics and gradients, float32 and bfloat16, ReLU and ReLU6."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax.models import MobileNetV1
from mnet_jax.ops import cpu_kernels
from mnet_jax.ops.batchnorm import BatchNormAct, batch_norm_act_cpu, batch_norm_act_reference, per_channel


class FlaxBatchNormAct(nn.Module):
  activation: str

  @nn.compact
  def __call__(self, x, train):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3, use_fast_variance=False,
                     dtype=x.dtype, name="bn")(x)
    return jax.nn.relu6(x) if self.activation == "relu6" else jax.nn.relu(x)


class OurBatchNormAct(nn.Module):
  activation: str

  @nn.compact
  def __call__(self, x, train):
    return BatchNormAct(self.activation, 0.9, 1e-3, x.dtype, name="bn")(x, train)


def inputs(shape, dtype="float32"):
  """Channels with different means (up to 40) and spreads, so that ReLU6 clips some values at both ends."""
  kx, kw = jax.random.split(jax.random.key(sum(shape)))
  channels = shape[-1]
  spread, mean = per_channel(jnp.linspace(0.5, 4, channels), len(shape)), per_channel(jnp.linspace(-3, 40, channels),
                                                                                       len(shape))
  x = jax.random.normal(kx, shape) * spread + mean
  return x.astype(dtype), jax.random.normal(kw, shape)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_same_variables_outputs_and_gradients_as_flax_batchnorm(activation):
  x, weights = inputs((4, 9, 7, 5))
  flax_model, our_model = FlaxBatchNormAct(activation), OurBatchNormAct(activation)
  variables = flax_model.init(jax.random.key(0), x, True)
  assert jax.tree.map(lambda a, b: a.shape == b.shape and bool((a == b).all()), variables,
                      our_model.init(jax.random.key(0), x, True)) == jax.tree.map(lambda _: True, variables)
  params = {"bn": {"scale": jnp.linspace(0.5, 2, 5), "bias": jnp.linspace(-1, 3, 5)}}

  def train_loss(model):
    def loss(params, x):
      y, updates = model.apply({**variables, "params": params}, x, True, mutable=["batch_stats"])
      return jnp.sum(y * weights), updates
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)

  for actual, expected in zip(jax.tree.leaves(train_loss(our_model)), jax.tree.leaves(train_loss(flax_model))):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(jnp.abs(expected).max()))
  evaluate = lambda model: model.apply({**variables, "params": params}, x, False)  # noqa: E731
  np.testing.assert_allclose(evaluate(our_model), evaluate(flax_model), rtol=1e-6, atol=1e-6)


def statistics_loss(form, activation, weights):
  """Weights every output differently, and uses the batch statistics too, so that every term of the
  hand-written gradient (including those of the statistics' cotangents) is checked."""
  def loss(x, scale, bias):
    y, mean, var = form(x, scale, bias, 1e-3, activation)
    return jnp.sum(y.astype(jnp.float32) * weights) + jnp.sum(mean * jnp.arange(mean.size)) + 3 * jnp.sum(var)
  return loss


@pytest.mark.parametrize("dtype, tolerance", [("float32", 2e-5), ("bfloat16", 2e-2)])
@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (2, 1, 1, 3), pytest.param((16, 28, 28, 32), marks=pytest.mark.slow),
                                   (784, 64)])
def test_cpu_form_equals_reference(shape, activation, dtype, tolerance):
  x, weights = inputs(shape, dtype)
  channels = shape[-1]
  scale, bias = jnp.linspace(0.5, 2, channels), jnp.linspace(-1, 3, channels)
  expected_out = batch_norm_act_reference(x, scale, bias, 1e-3, activation)
  actual_out = jax.jit(batch_norm_act_cpu, static_argnums=(3, 4))(x, scale, bias, 1e-3, activation)
  expected_grads = jax.jit(jax.grad(statistics_loss(batch_norm_act_reference, activation, weights),
                                    argnums=(0, 1, 2)))(x, scale, bias)
  actual_grads = jax.jit(jax.grad(statistics_loss(batch_norm_act_cpu, activation, weights),
                                  argnums=(0, 1, 2)))(x, scale, bias)
  for actual, expected in zip([*actual_out, *actual_grads], [*expected_out, *expected_grads]):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * float(np.abs(expected).max()))


def train_step_hlo(model, images):
  variables = jax.eval_shape(model.init, jax.random.key(0), images)

  def loss(params, batch_stats):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                            mutable=["batch_stats"])
    return logits.sum()
  return jax.jit(jax.grad(loss)).lower(variables["params"], variables["batch_stats"]).as_text()


def test_model_on_one_cpu_device_uses_the_cpu_kernels():
  hlo = train_step_hlo(MobileNetV1(alpha=0.25, num_classes=3, dropout_rate=0.0), jnp.ones((2, 32, 32, 3)))
  assert hlo.count("mnet_ChannelMoments") == 27 and hlo.count("mnet_BatchNormActGradSums") == 27
  portable = train_step_hlo(MobileNetV1(alpha=0.25, num_classes=3, dropout_rate=0.0, kernels="portable"),
                            jnp.ones((2, 32, 32, 3)))
  assert "mnet_" not in portable and "custom_call" not in portable


def float64_gradients(x, dy, scale, bias, epsilon, upper):
  """The gradients of sum(clip(BatchNorm(x), 0, upper) * dy) with respect to x, scale and bias, in NumPy float64."""
  x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean = x.mean(axes)
  rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axes) + epsilon)
  xhat = (x - mean) * rstd
  z = xhat * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)
  g = np.where((z > 0) & (z < upper), dy, 0.0)
  dscale, dbias = (g * xhat).sum(axes), g.sum(axes)
  count = x.size // x.shape[-1]
  dx = np.asarray(scale, np.float64) * rstd * (g - dbias / count - xhat * dscale / count)
  return dx, dscale, dbias


def test_cpu_form_is_as_accurate_as_the_reference():
  """Against float64, on channels with a mean 20x their spread: float sums of ~10^5 such terms (as a first C++
  version made) were off by 1e-4 in every gradient; the reference's and the C++ form's are ~1e-7."""
  x, dy = inputs((16, 56, 56, 64))
  x = x - per_channel(jnp.linspace(-3, 40, 64), 4) + 20
  scale, bias = jnp.linspace(0.5, 2, 64), jnp.linspace(-1, 3, 64)
  expected = float64_gradients(x, dy, scale, bias, 1e-3, 6.0)
  for form in (batch_norm_act_reference, batch_norm_act_cpu):
    loss = lambda x, scale, bias: jnp.sum(form(x, scale, bias, 1e-3, "relu6")[0] * dy)  # noqa: B023, E731
    for actual, exact in zip(jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, scale, bias), expected):
      assert np.linalg.norm(np.asarray(actual, np.float64) - exact) <= 3e-6 * np.linalg.norm(exact), form.__name__


def test_channel_moments_against_float64():
  """The one-pass moments kernel on channels whose mean is 10^4 times their spread, a constant channel, and a first
  row (the kernel's shift) far out in the tail: mean and variance within float32 rounding of float64's."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((8, 30, 30, 4)) * np.array([1.0, 1e-3, 0.0, 2.0]) + np.array([3.0, 10.0, -7.0, 0.0])
  x[0, 0, 0] += np.array([100.0, 0.5, 0.0, -300.0])
  x = x.astype(np.float32)
  mean, var = jax.jit(lambda x: cpu_kernels.call("ChannelMoments", ((4,), (4,)), x))(x)
  exact = x.astype(np.float64).reshape(-1, 4)
  np.testing.assert_allclose(mean, exact.mean(0), rtol=1e-7, atol=0)
  np.testing.assert_allclose(var, exact.var(0), rtol=1e-6, atol=0)
