"""The families of mnet_jax.models: V2's Table 2 and V3's Tables 1-2 as layer shapes, the width rules Keras uses,
V1's parameter tree, the registry and config path, bad input in one line, and the 'cpu' kernel set against
'portable' for every family (forward and gradients, float32 and bfloat16)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from gradients import gradients_function, kernel_sets_agree, rounding_spread, tree_error

from mnet_jax import models, workdir
from mnet_jax.configs import common
from mnet_jax.errors import ConfigError
from mnet_jax.ops import cpu_kernels


def outputs_at_224(model_name, **options):
  module = models.create(model_name, 1.0, 1000, kernels="portable", **options)
  images = jnp.zeros((1, 224, 224, 3))
  variables = jax.eval_shape(module.init, jax.random.key(0), images)
  (logits, state) = jax.eval_shape(
      lambda v, x: module.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), variables, images)
  inter = state["intermediates"]
  return logits, {name: inter[name]["__call__"][0].shape for name in inter if name != "__call__"}


def test_v2_table2_shapes_at_224():
  logits, shapes = outputs_at_224("mobilenet_v2")
  # Table 2's rows end at: 112x112x32 (stem), 16, 24, 32, 64, 96, 160, 320, then the 1280 conv.
  expected = {"stem": (112, 32), "block0_project": (112, 16), "block2_project": (56, 24), "block5_project": (28, 32),
              "block9_project": (14, 64), "block12_project": (14, 96), "block15_project": (7, 160),
              "block16_project": (7, 320), "head": (7, 1280)}
  assert {k: shapes[k] for k in expected} == {k: (1, s, s, c) for k, (s, c) in expected.items()}
  assert "block0_expand" not in shapes and shapes["block1_expand"] == (1, 112, 112, 96)
  assert logits.shape == (1, 1000)


@pytest.mark.parametrize("model_name, expected", [
    ("mobilenet_v3_large", {"stem": (112, 16), "block0_project": (112, 16), "block2_project": (56, 24),
                            "block5_project": (28, 40), "block9_project": (14, 80), "block11_project": (14, 112),
                            "block14_project": (7, 160), "head": (7, 960), "block3_expand": (56, 72)}),
    ("mobilenet_v3_small", {"stem": (112, 16), "block0_project": (56, 16), "block2_project": (28, 24),
                            "block5_project": (14, 40), "block7_project": (14, 48), "block10_project": (7, 96),
                            "head": (7, 576), "block2_expand": (28, 88)}),
])
def test_v3_tables_shapes_at_224(model_name, expected):
  logits, shapes = outputs_at_224(model_name)
  assert {k: shapes[k] for k in expected} == {k: (1, s, s, c) for k, (s, c) in expected.items()}
  assert logits.shape == (1, 1000)


def test_width_rules_as_keras():
  v2 = {l.name: l for l in models.layer_spec("mobilenet_v2", 0.35)}
  assert (v2["stem"].out_channels, v2["block0_project"].out_channels, v2["head"].out_channels) == (16, 8, 1280)
  assert models.layer_spec("mobilenet_v2", 1.4)[-2].out_channels == 1792  # widened above 1
  for alpha in (0.5, 0.75, 1.25):
    large = {l.name: l for l in models.layer_spec("mobilenet_v3_large", alpha)}
    assert large["stem"].out_channels == 16  # not scaled, as Keras
  large = {l.name: l for l in models.layer_spec("mobilenet_v3_large", 1.0)}
  assert (large["block3_se"].se_channels, large["block12_se"].se_channels) == (24, 168)
  assert (large["head_fc"].out_channels, large["block3_dw"].kernel_size, large["block6_dw"].activation) == (
      1280, 5, "hard_swish")
  small = {l.name: l for l in models.layer_spec("mobilenet_v3_small", 1.0)}
  assert small["head_fc"].out_channels == 1024 and small["block0_se"].se_channels == 8
  minimal = models.layer_spec("mobilenet_v3_large", 1.0, minimalistic=True)
  assert not any(l.kind == "squeeze_excite" for l in minimal)
  assert {l.activation for l in minimal} == {"relu", "linear"}
  assert {l.kernel_size for l in minimal if l.kind == "depthwise"} == {3}


def test_residuals_where_stride_is_1_and_widths_match():
  v2 = models.layer_spec("mobilenet_v2", 1.0)
  residual = [l.name for l in v2 if l.residual_from]
  assert residual == [f"block{i}_project" for i in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)]
  assert {l.residual_from for l in v2 if l.residual_from} == {f"block{i}_expand" for i in (2, 4, 5, 7, 8, 9, 11, 12,
                                                                                             14, 15)}
  large = models.layer_spec("mobilenet_v3_large", 1.0)
  assert [l.residual_from for l in large if l.residual_from][0] == "block0_dw"  # no expand in block 0


def test_v1_parameter_tree_follows_table1_as_before():
  """V1's variables: per conv layer `kernel` and `bn` (scale, bias; batch_stats mean, var), a Dense classifier."""
  module = models.create("mobilenet_v1", 0.5, 10, kernels="portable")
  variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  expected_params, expected_stats = {}, {}
  for layer in module.layers()[:-1]:
    kernel = (3, 3, 1, layer.in_channels) if layer.kind == "depthwise" else (
        layer.kernel_size, layer.kernel_size, layer.in_channels, layer.out_channels)
    expected_params[layer.name] = {"kernel": kernel, "bn": {"scale": (layer.out_channels,),
                                                            "bias": (layer.out_channels,)}}
    expected_stats[layer.name] = {"bn": {"mean": (layer.out_channels,), "var": (layer.out_channels,)}}
  expected_params["classifier"] = {"kernel": (512, 10), "bias": (10,)}
  actual = jax.tree.map(lambda s: s.shape, variables)
  assert actual == {"params": expected_params, "batch_stats": expected_stats}


def config_for(model_name, **model_fields):
  config = common.base_config(0.35, 32, "paper")
  config.model.name = model_name
  for key, value in model_fields.items():
    config.model[key] = value
  return config


def test_model_from_config_goes_through_the_registry():
  config = config_for("mobilenet_v3_small", minimalistic=True, kernels="portable")
  model = workdir.model_from_config(config, 10)
  assert (type(model).__name__, model.size, model.minimalistic, model.alpha, model.num_classes) == (
      "MobileNetV3", "small", True, 0.35, 10)
  facts = workdir.model_facts(config, 10)
  assert (facts["model"], facts["minimalistic"], facts["alpha"], facts["resolution"], facts["num_classes"]) == (
      "mobilenet_v3_small", True, 0.35, 32, 10)
  old = ml_collections.ConfigDict(config_for("mobilenet_v1").to_dict())
  del old.model["name"]  # a config.json written before the field existed is V1's
  assert type(workdir.model_from_config(old, 10)).__name__ == "MobileNetV1"


@pytest.mark.parametrize("model_name, fields, message", [
    ("mobilenet_v5", {}, "model name='mobilenet_v5' is unknown; allowed: mobilenet_v1, mobilenet_v2, "
                         "mobilenet_v3_large, mobilenet_v3_small"),
    ("mobilenet_v1", {"minimalistic": True}, "minimalistic=True is not allowed for mobilenet_v1"),
    ("mobilenet_v2", {"kernel_sizes": (3, 5)}, "kernel_sizes=(3, 5) is not allowed for mobilenet_v2"),
    ("mobilenet_v3_large", {"activation": "relu"}, "activation='relu' is not allowed for mobilenet_v3_large"),
])
def test_bad_config_is_one_line(model_name, fields, message):
  with pytest.raises(ConfigError) as error:
    workdir.model_from_config(config_for(model_name, **fields), 10)
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("model_name, kwargs, message", [
    ("mobilenet_v2", {"alpha": 0}, "alpha=0 is not allowed"),
    ("mobilenet_v3_small", {"alpha": float("inf")}, "alpha=inf is not allowed"),
    ("mobilenet_v3_large", {"num_classes": 0}, "num_classes=0 is not allowed"),
    ("mobilenet_v3_large", {"minimalistic": "yes"}, "minimalistic='yes' is unknown"),
    ("mobilenet_v2", {"stem_stride": 3}, "stem_stride=3 is unknown"),
    ("mobilenet_v2", {"variant": "shallow"}, "variant is not an option of mobilenet_v2"),
])
def test_bad_module_options_raise_config_error(model_name, kwargs, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    models.layer_spec(model_name, **kwargs)


@pytest.mark.parametrize("size", [31, 16])
def test_too_small_images_are_refused(size):
  module = models.create("mobilenet_v3_small", 0.35, 5, kernels="portable")
  with pytest.raises(ConfigError, match=f"resolution={size} is not allowed"):
    module.init(jax.random.key(0), jnp.zeros((1, size, 40, 3)))


@pytest.mark.skipif(cpu_kernels.library_error() is not None or jax.device_count() > 1,
                    reason="the C++ kernels need a compiler and a one-device CPU process")
@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_cpu_kernels_equal_portable_for_every_family(model_name):
  """Training-mode loss and gradients: 5x5 depthwise (C++ forward), squeeze-excite, hard-swish, residual adds. In
  float32 the two sets agree to rounding (tests/gradients.py); in bfloat16 the 'cpu' set is as close to float32 as
  'portable' is."""
  images = jax.random.normal(jax.random.key(1), (8, 64, 64, 3))
  labels = jnp.arange(8) % 4
  results, spread = {}, None
  for kernels in ("portable", "cpu"):
    for dtype in ("float32", "bfloat16"):
      module = models.create(model_name, 0.35, 4, kernels=kernels, dtype=dtype, dropout_rate=0.0)
      gradients = gradients_function(module, jax.jit(module.init)(jax.random.key(0), images))
      results[kernels, dtype] = gradients(images, labels)
      if (kernels, dtype) == ("portable", "float32"):
        spread = rounding_spread(gradients, images, labels, results[kernels, dtype][1])
  (loss_p, grads_p), (loss_c, grads_c) = results["portable", "float32"], results["cpu", "float32"]
  np.testing.assert_allclose(loss_c, loss_p, rtol=1e-5)
  assert kernel_sets_agree(grads_c, grads_p, spread), (tree_error(grads_c, grads_p), spread)
  portable_bf16, cpu_bf16 = tree_error(results["portable", "bfloat16"][1], grads_p), tree_error(
      results["cpu", "bfloat16"][1], grads_p)
  assert cpu_bf16 < 2 * portable_bf16 + 0.05, (cpu_bf16, portable_bf16)
  assert abs(results["cpu", "bfloat16"][0] - loss_p) < 2 * abs(results["portable", "bfloat16"][0] - loss_p) + 0.02
