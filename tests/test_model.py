"""The Flax module against Table 1, the depthwise conv against a direct reference, and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax.errors import ConfigError
from mnet_jax.models import MobileNetV1, architecture
from mnet_jax.ops.depthwise import IMPLEMENTATIONS, depthwise_conv, mixed_depthwise_conv

# Table 1 of the paper at 224 (with the last depthwise stride corrected to 1): output of each layer.
TABLE1_OUTPUTS = [
    ("stem", 112, 32),
    ("block1_dw", 112, 32), ("block1_pw", 112, 64),
    ("block2_dw", 56, 64), ("block2_pw", 56, 128),
    ("block3_dw", 56, 128), ("block3_pw", 56, 128),
    ("block4_dw", 28, 128), ("block4_pw", 28, 256),
    ("block5_dw", 28, 256), ("block5_pw", 28, 256),
    ("block6_dw", 14, 256), ("block6_pw", 14, 512),
    *[(f"block{i}_{k}", 14, 512) for i in range(7, 12) for k in ("dw", "pw")],
    ("block12_dw", 7, 512), ("block12_pw", 7, 1024),
    ("block13_dw", 7, 1024), ("block13_pw", 7, 1024),
]


def test_table1_shapes_at_224():
  model = MobileNetV1()
  images = jnp.zeros((1, 224, 224, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  (logits, state) = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), variables, images)
  inter = state["intermediates"]
  assert [(name, inter[name]["__call__"][0].shape) for name, _, _ in TABLE1_OUTPUTS] == \
      [(name, (1, size, size, channels)) for name, size, channels in TABLE1_OUTPUTS]
  assert logits.shape == (1, 1000)
  params = variables["params"]
  assert params["block5_dw"]["kernel"].shape == (3, 3, 1, 256)  # depthwise: feature_group_count=C layout
  assert params["block5_pw"]["kernel"].shape == (1, 1, 256, 256)
  assert params["classifier"]["kernel"].shape == (1024, 1000)
  assert len(architecture()) == 28  # 27 convs (depthwise and pointwise counted separately) + FC


def reference_depthwise(x, kernel, stride):
  """Direct loops over output pixels with TF 'SAME' padding, in float64 NumPy."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  n, h, w, c = x.shape
  k = kernel.shape[0]
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h, pad_w = max((out_h - 1) * stride + k - h, 0), max((out_w - 1) * stride + k - w, 0)
  xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  out = np.zeros((n, out_h, out_w, c))
  for i in range(out_h):
    for j in range(out_w):
      patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j, :] = np.einsum("nabc,abc->nc", patch, kernel[:, :, 0, :])
  return out


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8, 13])
def test_depthwise_matches_reference(impl, stride, size):
  kx, kk = jax.random.split(jax.random.key(size * 10 + stride))
  x = jax.random.normal(kx, (2, size, size + 1, 5))
  kernel = jax.random.normal(kk, (3, 3, 1, 5))
  out = depthwise_conv(x, kernel, stride, impl)
  np.testing.assert_allclose(out, reference_depthwise(x, kernel, stride), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_forward_bfloat16_keeps_float32_params():
  model = MobileNetV1(alpha=0.25, num_classes=7, dtype="bfloat16")
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), images)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits = jax.jit(model.apply)(variables, images)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  reference = jax.jit(MobileNetV1(alpha=0.25, num_classes=7).apply)(variables, images)
  assert jnp.all(jnp.isfinite(logits))
  np.testing.assert_allclose(logits, reference, atol=0.1 * float(jnp.abs(reference).max()) + 1e-3)


@pytest.mark.slow
def test_train_mode_updates_batch_stats_and_uses_dropout():
  model = MobileNetV1(alpha=0.25, num_classes=10, dropout_rate=0.5, activation="relu")
  images = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  variables = model.init(jax.random.key(1), images)
  run = lambda seed: model.apply(variables, images, train=True, rngs={"dropout": jax.random.key(seed)},
                                 mutable=["batch_stats"])
  (a, stats), (b, _) = run(0), run(1)
  assert not jnp.allclose(a, b)  # dropout is active in training
  before = variables["batch_stats"]["stem"]["bn"]["mean"]
  assert not jnp.allclose(stats["batch_stats"]["stem"]["bn"]["mean"], before)


@pytest.mark.parametrize("kwargs, shape, message", [
    (dict(alpha=0.0), (1, 32, 32, 3), "alpha=0.0 is not allowed"),
    (dict(alpha="half"), (1, 32, 32, 3), "alpha='half' is not allowed"),
    (dict(variant="tiny"), (1, 32, 32, 3), "variant='tiny' is unknown"),
    (dict(num_classes=0), (1, 32, 32, 3), "num_classes=0 is not allowed"),
    (dict(activation="gelu"), (1, 32, 32, 3), "activation='gelu' is unknown; allowed: relu, relu6"),
    (dict(dtype="float16"), (1, 32, 32, 3), "dtype='float16' is unknown; allowed: float32, bfloat16"),
    (dict(depthwise_impl="magic"), (1, 32, 32, 3), "depthwise_impl='magic' is unknown"),
    (dict(kernels="fast"), (1, 32, 32, 3), "kernels='fast' is unknown; allowed: auto, portable, cpu"),
    (dict(), (1, 28, 28, 3), "resolution=28 is not allowed: it must be an integer >= 32"),
    (dict(), (1, 32, 32, 1), "expected (batch, height, width, 3)"),
])
def test_bad_model_inputs(kwargs, shape, message):
  with pytest.raises(ConfigError) as error:
    MobileNetV1(**kwargs).init(jax.random.key(0), jnp.zeros(shape))
  assert message in str(error.value)


@pytest.mark.slow
def test_kernel_sizes_param_tree_and_mixconv_forward():
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  vanilla = jax.eval_shape(MobileNetV1(alpha=0.25, num_classes=5, kernel_sizes=(7,)).init, jax.random.key(1),
                           images)["params"]
  assert vanilla["block13_dw"]["kernel"].shape == (7, 7, 1, 256)
  model = MobileNetV1(alpha=0.25, num_classes=5, kernel_sizes=(3, 5, 7), depthwise_impl="xla")
  variables = jax.jit(model.init)(jax.random.key(1), images)
  block = variables["params"]["block2_dw"]  # 16 channels: equal split (6, 5, 5), remainder to the first group
  assert [block[f"kernel_{i}"].shape for i in range(3)] == [(3, 3, 1, 6), (5, 5, 1, 5), (7, 7, 1, 5)]
  assert "kernel" not in block
  exponential = jax.eval_shape(MobileNetV1(alpha=0.25, kernel_sizes=(3, 5, 7), kernel_split="exponential").init,
                               jax.random.key(1), images)["params"]["block2_dw"]
  assert [exponential[f"kernel_{i}"].shape[-1] for i in range(3)] == [8, 4, 4]
  # The MixConv layer equals its groups convolved one by one with the reference loops and concatenated.
  _, state = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
      variables, images)
  x = state["intermediates"]["block1_pw"]["__call__"][0]
  kernels = [block[f"kernel_{i}"] for i in range(3)]
  expected = np.concatenate([reference_depthwise(x[..., lo:hi], k, 2)
                             for lo, hi, k in [(0, 6, kernels[0]), (6, 11, kernels[1]), (11, 16, kernels[2])]], -1)
  out = mixed_depthwise_conv(x, kernels, 2, "xla")
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  logits = jax.jit(model.apply)(variables, images)
  assert logits.shape == (2, 5) and jnp.all(jnp.isfinite(logits))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_sizes=(2,)), "kernel_sizes=(2,) has kernel size 2; allowed: one or more different odd integers >= 3"),
    (dict(kernel_sizes=(3, 5, 5)), "kernel_sizes=(3, 5, 5) repeats a size"),
    (dict(kernel_sizes=()), "kernel_sizes=() is empty"),
    (dict(kernel_split="random"), "kernel_split='random' is unknown; allowed: equal, exponential"),
    (dict(alpha=0.25, kernel_sizes=tuple(range(3, 21, 2))), "leaves a group of block1_dw (8 channels) empty"),
    (dict(variant="full_conv", kernel_sizes=(5,)), "not allowed with variant='full_conv'"),
])
def test_bad_kernel_sizes(kwargs, message):
  with pytest.raises(ConfigError) as error:
    MobileNetV1(**kwargs).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert message in str(error.value)
