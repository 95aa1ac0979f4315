"""Exact Mult-Adds and weights of MobileNet V2 and V3: the published Keras-built figures, and a count read off
keras.applications models built here (weights=None) for other widths, resolutions and numbers of classes."""

import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnet_jax import models
from mnet_jax.count import count
from mnet_jax.errors import ConfigError


@pytest.mark.parametrize("model, mult_adds, weights, with_biases", [
    ("mobilenet_v2", 300_774_272, 3_469_760, 3_470_760),
    ("mobilenet_v3_large", 216_589_760, 5_451_272, 5_458_632),
    ("mobilenet_v3_small", 56_510_400, 2_525_832, 2_530_744),
    ("mobilenet_v1", 568_740_352, 4_209_088, 4_210_088),
])
def test_published_keras_figures_at_1_0_224(model, mult_adds, weights, with_biases):
  totals = count(1.0, 224, model=model)
  assert (totals["mult_adds"], totals["params"], totals["params"] + totals["biases"]) == (
      mult_adds, weights, with_biases)


@pytest.mark.parametrize("model, alpha, resolution, minimalistic, mult_adds, with_biases", [
    ("mobilenet_v2", 1.4, 224, False, 582_195_824, 6_060_840),
    ("mobilenet_v2", 0.35, 96, False, 11_934_128, 1_663_048),
    ("mobilenet_v2", 0.75, 160, False, 107_295_200, 2_609_784),
    ("mobilenet_v3_large", 0.75, 224, False, 154_560_624, 3_974_440),
    ("mobilenet_v3_small", 0.75, 224, False, 43_399_344, 2_032_192),
    ("mobilenet_v3_large", 1.0, 224, True, 209_136_704, 3_899_888),
    ("mobilenet_v3_small", 1.0, 224, True, 52_288_448, 2_032_624),
])
def test_reference_cells_with_biases(model, alpha, resolution, minimalistic, mult_adds, with_biases):
  totals = count(alpha, resolution, model=model, minimalistic=minimalistic)
  assert (totals["mult_adds"], totals["params"] + totals["biases"]) == (mult_adds, with_biases)


def keras_count(keras_model):
  """Mult-Adds, weights and biases read off a Keras model: each conv, depthwise conv or Dense kernel applied at
  every position of its layer's output (1 for the pooled vector)."""
  mult_adds = weights = biases = 0
  for layer in keras_model.layers:
    names = [w.path.split("/")[-1] for w in layer.weights]
    if "kernel" not in names:
      continue
    kernel = layer.weights[names.index("kernel")]
    positions = int(np.prod(layer.output.shape[1:-1]))
    size = int(np.prod(kernel.shape))
    mult_adds, weights = mult_adds + positions * size, weights + size
    if "bias" in names:
      biases += int(np.prod(layer.weights[names.index("bias")].shape))
  return mult_adds, weights, biases


def keras_application(model, alpha, resolution, num_classes, minimalistic=False):
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import keras
  shape = (resolution, resolution, 3)
  if model == "mobilenet_v2":
    return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, weights=None, classes=num_classes)
  build = keras.applications.MobileNetV3Large if model == "mobilenet_v3_large" else keras.applications.MobileNetV3Small
  return build(input_shape=shape, alpha=alpha, weights=None, classes=num_classes, minimalistic=minimalistic)


@pytest.mark.parametrize("model, alpha, resolution, num_classes, minimalistic", [
    ("mobilenet_v2", 0.6, 72, 7, False),
    ("mobilenet_v2", 1.3, 33, 1000, False),
    ("mobilenet_v3_large", 0.5, 64, 10, False),
    ("mobilenet_v3_large", 1.25, 45, 3, True),
    ("mobilenet_v3_small", 0.35, 96, 100, False),
    ("mobilenet_v3_small", 1.0, 40, 1000, True),
])
def test_counts_equal_a_count_read_off_keras(model, alpha, resolution, num_classes, minimalistic):
  totals = count(alpha, resolution, num_classes=num_classes, model=model, minimalistic=minimalistic)
  expected = keras_count(keras_application(model, alpha, resolution, num_classes, minimalistic))
  assert (totals["mult_adds"], totals["params"], totals["biases"]) == expected


@pytest.mark.parametrize("model, minimalistic", [("mobilenet_v2", False), ("mobilenet_v3_large", False),
                                                 ("mobilenet_v3_small", False), ("mobilenet_v3_small", True)])
def test_trainable_count_equals_the_module_parameter_count(model, minimalistic):
  options = {"minimalistic": True} if minimalistic else {}
  module = models.create(model, 0.75, 11, kernels="portable", **options)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  leaves = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"]))
  assert leaves == count(0.75, 64, num_classes=11, model=model, minimalistic=minimalistic)["trainable_params"]


def test_cli_json_for_a_family():
  import json
  out = subprocess.run([sys.executable, "-m", "mnet_jax.count", "--model", "mobilenet_v3_small", "--alpha", "1.0",
                        "--resolution", "224", "--json"], capture_output=True, text=True, check=True).stdout
  d = json.loads(out)
  assert (d["model"], d["mult_adds"], d["params"], d["biases"]) == ("mobilenet_v3_small", 56_510_400, 2_525_832, 4_912)
  assert {"mult_adds", "body_mult_adds", "params", "trainable_params", "layers"} <= set(d)


def test_paper_flags_every_disagreeing_published_row():
  table = subprocess.run([sys.executable, "-m", "mnet_jax.count", "--paper"], capture_output=True, text=True,
                         check=True).stdout
  assert "MISMATCH" not in table
  rows = [line for line in table.splitlines() if line.strip().startswith("mobilenet_v")]
  assert len(rows) == 22 + 6
  assert all(" ok" in line for line in rows if "mobilenet_v2" in line)
  disagreeing = [line for line in rows if "disagrees with its own architecture; KNOWN" in line]
  assert [line.split()[0] for line in disagreeing] == [
      "mobilenet_v3_large_1.0_224", "mobilenet_v3_small_1.0_224", "mobilenet_v3_small_0.75_224",
      "mobilenet_v3_small_minimalistic_1.0_224"]


@pytest.mark.parametrize("args, message", [
    (["--model", "mobilenet_v4"], "model name='mobilenet_v4' is unknown; allowed: mobilenet_v1, mobilenet_v2"),
    (["--minimalistic"], "minimalistic=True is not allowed for mobilenet_v1"),
    (["--model", "mobilenet_v2", "--minimalistic"], "minimalistic=True is not allowed for mobilenet_v2"),
    (["--model", "mobilenet_v2", "--variant", "shallow"], "variant='shallow' is not allowed for mobilenet_v2"),
    (["--model", "mobilenet_v3_large", "--alpha", "-1"], "alpha=-1.0 is not allowed"),
    (["--model", "mobilenet_v3_small", "--resolution", "31"], "resolution=31 is not allowed"),
])
@pytest.mark.slow
def test_cli_bad_family_input_is_one_line(args, message):
  result = subprocess.run([sys.executable, "-m", "mnet_jax.count", *args], capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_v1_options_on_another_family_raise_config_error():
  with pytest.raises(ConfigError, match="kernel_sizes=\\(5,\\) is not allowed for mobilenet_v3_large"):
    count(model="mobilenet_v3_large", kernel_sizes=(5,))
