"""Every depthwise implementation equals the reference (`xla`, a grouped convolution): forward, and the gradients
with respect to the input and the kernel, for strides 1 and 2, odd and even sizes, float32 and bfloat16, kernel
sizes 3 to 13 and MixConv's mixed groups."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax.errors import ConfigError
from mnet_jax.models import MobileNetV1
from mnet_jax.ops.depthwise import CHOICES, IMPLEMENTATIONS, depthwise_conv, depthwise_xla, mixed_depthwise_conv, resolve_impl

FAST = sorted(set(IMPLEMENTATIONS) - {"xla"})
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}  # relative to the largest value of the compared array


def loss_and_grads(impl, x, kernel, stride, weights):
  """A loss that weights every output differently, so a wrong position or channel changes the gradients."""
  def loss(x, kernel):
    return jnp.sum(depthwise_conv(x, kernel, stride, impl).astype(jnp.float32) * weights)
  out = depthwise_conv(x, kernel, stride, impl)
  return out, jax.grad(loss, argnums=(0, 1))(x, kernel)


def assert_close(actual, expected, dtype, k=3):
  """Within the dtype's tolerance; in bfloat16 a k x k sum's rounding error grows ~k (k^2 terms: `shifted`'s
  autodiff adds the input gradient's terms in bfloat16), so large kernels get k / 5 times more."""
  assert actual.dtype == expected.dtype and actual.shape == expected.shape
  actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
  scale = float(np.abs(expected).max())
  np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[dtype] * max(1, k / 5) * scale)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height,width", [(7, 8), (8, 8), (9, 13), pytest.param(32, 32, marks=pytest.mark.slow)])
@pytest.mark.parametrize("impl", FAST)
def test_forward_and_gradients_equal_reference(impl, height, width, stride, dtype):
  kx, kk, kw = jax.random.split(jax.random.key(height * 100 + width * 10 + stride), 3)
  x = jax.random.normal(kx, (3, height, width, 6)).astype(dtype)
  kernel = jax.random.normal(kk, (3, 3, 1, 6)).astype(dtype)
  out_shape = (3, -(-height // stride), -(-width // stride), 6)
  weights = jax.random.normal(kw, out_shape)
  out, (grad_x, grad_kernel) = loss_and_grads(impl, x, kernel, stride, weights)
  ref_out, (ref_grad_x, ref_grad_kernel) = loss_and_grads("xla", x, kernel, stride, weights)
  assert out.shape == out_shape
  assert_close(out, ref_out, dtype)
  assert_close(grad_x, ref_grad_x, dtype)
  assert_close(grad_kernel, ref_grad_kernel, dtype)


def check_against_reference(impl, x, kernels, stride, dtype):
  """Forward, input gradient and every kernel's gradient of mixed_depthwise_conv under jit, against `xla`."""
  x, kernels = x.astype(dtype), [kernel.astype(dtype) for kernel in kernels]
  weights = jax.random.normal(jax.random.key(7), mixed_depthwise_conv(x, kernels, stride, "xla").shape)

  @functools.partial(jax.jit, static_argnums=0)
  def run(impl, x, kernels):
    loss = lambda x, kernels: jnp.sum(mixed_depthwise_conv(x, kernels, stride, impl).astype(jnp.float32) * weights)
    return mixed_depthwise_conv(x, kernels, stride, impl), jax.grad(loss, argnums=(0, 1))(x, kernels)

  largest = max(kernel.shape[0] for kernel in kernels)
  for actual, expected in zip(jax.tree.leaves(run(impl, x, kernels)), jax.tree.leaves(run("xla", x, kernels))):
    assert_close(actual, expected, dtype, largest)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k, height, width, dtype", [(5, 16, 15, "bfloat16"), (7, 15, 16, "float32"),
                                                     (13, 9, 8, "bfloat16")])  # 13 > 9: padding beyond the image
@pytest.mark.parametrize("impl", FAST)
def test_larger_kernels_equal_reference(impl, k, height, width, dtype, stride):
  kx, kk = jax.random.split(jax.random.key(k))
  x = jax.random.normal(kx, (2, height, width, 5))
  check_against_reference(impl, x, [jax.random.normal(kk, (k, k, 1, 5))], stride, dtype)


@pytest.mark.parametrize("stride, dtype", [(1, "float32"), (2, "bfloat16")])
@pytest.mark.parametrize("impl", FAST)
def test_mixed_groups_equal_reference(impl, stride, dtype):
  """MixConv {3, 5, 7} over 11 channels (groups 5, 3, 3)."""
  x = jax.random.normal(jax.random.key(0), (2, 14, 13, 11))
  kernels = [jax.random.normal(jax.random.key(k), (k, k, 1, c)) for k, c in [(3, 5), (5, 3), (7, 3)]]
  check_against_reference(impl, x, kernels, stride, dtype)


@pytest.mark.parametrize("impl", FAST)
def test_jit_and_second_call_agree(impl):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))
  jitted = jax.jit(jax.grad(lambda x, k: jnp.sum(depthwise_conv(x, k, 2, impl) ** 2), argnums=(0, 1)))
  eager = jax.grad(lambda x, k: jnp.sum(depthwise_xla(x, k, 2) ** 2), argnums=(0, 1))(x, kernel)
  for actual, expected in zip(jitted(x, kernel), eager):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_auto_is_the_kernel_sets_form():
  assert resolve_impl("auto", "cpu") == "cpu_kernel" and resolve_impl("auto", "portable") == "xla"
  assert resolve_impl("shifted", "cpu") == "shifted"
  assert MobileNetV1().depthwise_impl == "auto"


CPU_KERNEL_GRADIENT_DIGEST = """
import hashlib, os, sys
if len(sys.argv) > 1:
  os.sched_setaffinity(0, {0})
import jax, jax.numpy as jnp, numpy as np
from mnet_jax.ops.batchnorm import batch_norm_act_cpu
from mnet_jax.ops.depthwise import depthwise_conv
x = jax.random.normal(jax.random.key(0), (16, 30, 30, 24))
kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 24))
def loss(x, kernel):
  y, _, _ = batch_norm_act_cpu(depthwise_conv(x, kernel, 1, "cpu_kernel"), jnp.ones(24), jnp.zeros(24), 1e-3, "relu6")
  return jnp.sum(y ** 3)
grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
digests = {hashlib.sha256(b"".join(np.asarray(g).tobytes() for g in grads(x, kernel))).hexdigest() for _ in range(3)}
print(len(os.sched_getaffinity(0)), *digests)
"""


@pytest.mark.slow
def test_cpu_kernel_gradients_are_deterministic():
  """Partial sums (depthwise kernel gradient, BatchNorm statistics) are added in a fixed order whatever thread ran
  them, so gradients are bitwise equal from call to call and with one core or all of them (resumed runs replay
  bitwise)."""
  all_cores = subprocess.run([sys.executable, "-c", CPU_KERNEL_GRADIENT_DIGEST], capture_output=True, text=True)
  one_core = subprocess.run([sys.executable, "-c", CPU_KERNEL_GRADIENT_DIGEST, "one-core"], capture_output=True,
                            text=True)
  cores, digest = all_cores.stdout.split()  # one digest for the three calls
  assert one_core.stdout.split() == ["1", digest], one_core.stderr
  assert int(cores) == os.cpu_count()


def run_python(code, **env):
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


def test_cpu_kernel_without_compiler(tmp_path):
  """No compiler: asking for cpu_kernel (or kernels='cpu') is one clear line; kernels='auto' falls back to the
  portable set with a warning."""
  code = ("from mnet_jax.ops import resolve_kernels; from mnet_jax.ops.depthwise import check_impl; "
          "print(resolve_kernels('auto'))\n"
          "for check in (lambda: check_impl('cpu_kernel'), lambda: resolve_kernels('cpu')):\n"
          "  try: check()\n"
          "  except ValueError as e: print(e)")
  result = run_python(code, CXX=str(tmp_path / "no-such-c++"), MNET_JAX_CACHE=str(tmp_path / "cache"))
  no_compiler = f"no C++ compiler '{tmp_path / 'no-such-c++'}' (set $CXX)"
  assert result.stdout.splitlines() == [
      "portable", f"depthwise_impl='cpu_kernel' is unavailable: {no_compiler}; use auto or shifted_vjp",
      f"kernels='cpu' is unavailable: {no_compiler}; use auto or portable"], result.stderr
  assert "the C++ CPU kernels are unavailable (no C++ compiler" in result.stderr


def test_unknown_impl_is_one_clear_line():
  with pytest.raises(ConfigError, match=r"depthwise_impl='fast' is unknown; allowed: " + ", ".join(CHOICES)):
    resolve_impl("fast", "portable")


@pytest.mark.slow
@pytest.mark.parametrize("impl", FAST)
def test_model_gradients_do_not_depend_on_impl(impl):
  """Same parameters (checkpoints interchangeable) and the same training gradients through the whole net."""
  images = jax.random.normal(jax.random.key(0), (4, 33, 32, 3))
  labels = jnp.arange(4) % 5
  reference = MobileNetV1(alpha=0.25, num_classes=5, depthwise_impl="xla", dropout_rate=0.0)  # kernels: auto (cpu)
  variables = reference.init(jax.random.key(1), images)
  fast = MobileNetV1(alpha=0.25, num_classes=5, depthwise_impl=impl, dropout_rate=0.0)
  assert jax.tree.structure(fast.init(jax.random.key(1), images)) == jax.tree.structure(variables)

  def grads(model):
    def loss(params):
      logits, _ = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
    return jax.jit(jax.grad(loss))(variables["params"])

  # 29 layers of float32 rounding, amplified by BatchNorm over a batch of 4 at 1x1 in the last blocks: ~1e-3
  for actual, expected in zip(jax.tree.leaves(grads(fast)), jax.tree.leaves(grads(reference))):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=3e-3 * float(jnp.abs(expected).max()))
