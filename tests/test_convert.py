"""Keras MobileNet V1, V2, V3 -> mnet_jax: exact logits parity on Keras models built here with random weights and
random BatchNorm statistics, saved in the layout of the official files; refusal of a file for another family, alpha
or number of classes."""

import csv
import functools
import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import h5py
import jax
import numpy as np
import pytest

from mnet_jax import checkpoint, convert
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import MobileNetV1

LOGITS_TOLERANCE = 1e-4  # max abs difference, float32, BN in inference mode


def keras_modules():
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import keras
  from keras.src.legacy.saving import legacy_h5_format
  return keras, legacy_h5_format


def random_keras_mobilenet(alpha, resolution, seed=0):
  """keras.applications.MobileNet with its random (Glorot) kernels, random biases and random BN statistics.

  Purely random statistics make the signal vanish within a few layers (the logits then hardly depend on the
  input and would hide layout bugs), so the statistics are those of a random batch, then perturbed: every
  BN layer gets a random mean and variance near what its input really has.
  """
  keras, _ = keras_modules()
  keras.utils.set_random_seed(seed)
  model = keras.applications.MobileNet(alpha=alpha, input_shape=(resolution, resolution, 3), weights=None,
                                       classifier_activation=None)
  rng = np.random.default_rng(seed)
  batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in batch_norms:
    channels = layer.get_weights()[0].shape
    layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels), np.zeros(channels),
                       np.ones(channels)])
    layer.momentum = 0.0  # one training-mode call below sets the moving statistics to the batch's
  model(rng.uniform(-1, 1, (4, resolution, resolution, 3)).astype(np.float32), training=True)
  for layer in batch_norms:
    gamma, beta, mean, variance = layer.get_weights()
    mean = mean + rng.normal(0, 0.2, mean.shape) * np.sqrt(variance)
    layer.set_weights([gamma, beta, mean, variance * rng.uniform(0.5, 2.0, variance.shape)])
  kernel, bias = model.get_layer("conv_preds").get_weights()
  model.get_layer("conv_preds").set_weights([kernel, rng.normal(0, 0.5, bias.shape)])
  return model


def save_legacy_h5(model, path):
  """What `model.save_weights('x.h5')` wrote before Keras 3 (the official files' layout), written by Keras's own
  legacy HDF5 writer: top-level attribute layer_names, datasets at <layer>/<layer>/<weight>."""
  _, legacy_h5_format = keras_modules()
  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)


def rename_to_keras2(path):
  """Keras 3 names weights 'conv1/kernel' and depthwise filters 'conv_dw_1/kernel'; Keras 2, which wrote the
  official files, named them 'conv1/kernel:0' and 'conv_dw_1/depthwise_kernel:0'. Rewrites the file that way."""
  with h5py.File(path, "r+") as f:
    for layer in f.attrs["layer_names"]:
      group = f[layer]
      new_names = []
      for name in group.attrs["weight_names"]:
        name = name.decode() if isinstance(name, bytes) else name
        new = name + ":0"
        if layer.startswith("conv_dw_") and "_bn" not in layer:
          new = new.replace("/kernel:0", "/depthwise_kernel:0")
        group.move(name, new)
        new_names.append(new.encode())
      if new_names:
        group.attrs["weight_names"] = new_names


def logits_difference(keras_model, variables, alpha, resolution, seed=1):
  images = np.random.default_rng(seed).uniform(-1, 1, (2, resolution, resolution, 3)).astype(np.float32)
  expected = np.asarray(keras_model(images, training=False))
  actual = np.asarray(jax.jit(functools.partial(MobileNetV1(alpha=alpha).apply, train=False))(variables, images))
  assert actual.shape == expected.shape == (2, 1000)
  # The logits are far from zero and depend on the input, so a layout mistake anywhere would show.
  assert np.abs(expected).max() > 0.5 and np.abs(expected[0] - expected[1]).max() > 0.1
  return float(np.abs(actual - expected).max())


@functools.cache
def cached_keras_mobilenet(alpha, resolution):
  return random_keras_mobilenet(alpha, resolution)


@pytest.fixture
def small_keras_model():
  return cached_keras_mobilenet(0.25, 128)


@pytest.mark.slow
@pytest.mark.parametrize("alpha,resolution", [(1.0, 224), (0.25, 128)])
def test_official_layout_logits_parity(tmp_path, alpha, resolution):
  model = cached_keras_mobilenet(alpha, resolution)
  path = str(tmp_path / "mobilenet_tf.h5")
  save_legacy_h5(model, path)
  rename_to_keras2(path)
  with h5py.File(path, "r") as f:
    assert "layer_names" in f.attrs and "conv_dw_1/depthwise_kernel:0" in f["conv_dw_1"]
  variables = convert.variables_from_h5(path, alpha)
  assert logits_difference(model, variables, alpha, resolution) <= LOGITS_TOLERANCE


@pytest.mark.parametrize("layout", ["keras3_legacy_h5", "whole_model_h5", "keras3_weights_h5", "model_object"])
def test_other_layouts_logits_parity(tmp_path, small_keras_model, layout):
  model = small_keras_model
  if layout == "model_object":
    variables = convert.variables_from_keras_model(model, 0.25)
  else:
    path = str(tmp_path / ("m.weights.h5" if layout == "keras3_weights_h5" else "m.h5"))
    if layout == "keras3_legacy_h5":
      save_legacy_h5(model, path)
    elif layout == "whole_model_h5":
      model.save(path)
    else:
      model.save_weights(path)
    variables = convert.variables_from_h5(path, 0.25)
  assert logits_difference(model, variables, 0.25, 128) <= LOGITS_TOLERANCE


def test_converted_variables_match_the_model_tree(small_keras_model):
  variables = convert.variables_from_keras_model(small_keras_model, 0.25)
  expected = jax.eval_shape(lambda: MobileNetV1(alpha=0.25).init(jax.random.key(0), np.zeros((1, 32, 32, 3))))
  assert jax.tree.structure(variables) == jax.tree.structure(dict(expected))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, dict(expected))


@pytest.mark.slow
def test_file_for_another_alpha_is_refused_naming_the_layer(tmp_path, small_keras_model):
  path = str(tmp_path / "mobilenet_2_5_128_tf.h5")
  save_legacy_h5(small_keras_model, path)
  with pytest.raises(ConfigError) as error:
    convert.variables_from_h5(path, 0.5)
  message = str(error.value)
  assert "\n" not in message
  assert "'conv1'" in message and "alpha=0.5 needs (3, 3, 3, 16)" in message and "looks like alpha=0.25" in message


def test_file_without_classifier_is_refused(tmp_path):
  keras, _ = keras_modules()
  model = keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights=None, include_top=False)
  path = str(tmp_path / "mobilenet_2_5_128_tf_no_top.h5")
  save_legacy_h5(model, path)
  with pytest.raises(ConfigError, match=r"has no Keras layer 'conv_preds' \(a \*_no_top.h5 file has no classifier"):
    convert.variables_from_h5(path, 0.25)


def test_not_a_weights_file_is_refused(tmp_path):
  path = tmp_path / "notes.h5"
  path.write_text("not hdf5")
  with pytest.raises(ConfigError, match="cannot read .* as HDF5"):
    convert.variables_from_h5(str(path), 1.0)
  with pytest.raises(ConfigError, match="is not a file"):
    convert.variables_from_h5(str(tmp_path / "missing.h5"), 1.0)


def test_parity_check_catches_a_layout_mistake(small_keras_model):
  variables = convert.variables_from_keras_model(small_keras_model, 0.25)
  kernel = variables["params"]["block1_dw"]["kernel"]
  variables["params"]["block1_dw"]["kernel"] = kernel[::-1]  # the first depthwise filters upside down
  assert logits_difference(small_keras_model, variables, 0.25, 128) > 100 * LOGITS_TOLERANCE


# The workdir: command line, restore, evaluation on imagenet2012 (tfds mock data) ------------------


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "mnet_jax.convert", *args], capture_output=True, text=True,
                        timeout=300)


def restore(workdir, alpha):
  model = MobileNetV1(alpha=alpha)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)))
  return checkpoint.restore_variables(workdir, abstract)


@pytest.mark.slow
def test_command_line_writes_a_workdir_restored_like_any_other(tmp_path, small_keras_model):
  path = str(tmp_path / "mobilenet_2_5_128_tf.h5")
  save_legacy_h5(small_keras_model, path)
  rename_to_keras2(path)
  out = str(tmp_path / "keras-0.25-128")
  result = run_cli("--keras-h5", path, "--alpha", "0.25", "--resolution", "128", "--out", out)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(out, "config.json")) as f:
    config = json.load(f)
  assert (config["alpha"], config["resolution"], config["variant"]) == (0.25, 128, "standard")
  assert (config["data"]["name"], config["data"]["eval_split"], config["data"]["eval_crop_fraction"]) == (
      "imagenet2012", "validation", 0.875)
  assert config["data"]["max_eval_examples"] is None
  step, variables = restore(out, 0.25)
  assert step == 0
  assert logits_difference(small_keras_model, variables, 0.25, 128) <= LOGITS_TOLERANCE


@pytest.mark.slow
def test_command_line_refuses_a_file_for_another_alpha_in_one_line(tmp_path, small_keras_model):
  path = str(tmp_path / "mobilenet_2_5_128_tf.h5")
  save_legacy_h5(small_keras_model, path)
  out = str(tmp_path / "out")
  result = run_cli("--keras-h5", path, "--alpha", "1.0", "--resolution", "224", "--out", out)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr
  assert lines[0].startswith("error: ") and "Keras layer 'conv1' kernel" in lines[0] and "alpha=1.0 needs" in lines[0]
  assert not os.path.exists(out)


def test_existing_run_is_not_overwritten(tmp_path, small_keras_model):
  out = str(tmp_path / "run")
  convert.convert_keras_model(small_keras_model, 0.25, 128, out)
  with pytest.raises(ConfigError, match=r"already holds checkpoints; convert into a new directory"):
    convert.convert_keras_model(small_keras_model, 0.25, 128, out)


def evaluate_on_mock_imagenet(keras_model, alpha, out):
  """Converts keras_model into workdir `out`, evaluates it with mnet_jax.evaluate on imagenet2012 'validation'
  (tfds mock data, 13 images), and checks loss, top-1 and top-5 against the Keras model's own logits on the
  same images."""
  import tensorflow_datasets as tfds
  from mnet_jax import data, evaluate
  convert.convert_keras_model(keras_model, alpha, 32, out)
  config_path = os.path.join(out, "config.json")
  with open(config_path) as f:
    config = json.load(f)
  config["batch_size"] = 8  # 13 examples: two batches, the last one padded and masked
  with open(config_path, "w") as f:
    json.dump(config, f)
  with tfds.testing.mock_data(num_examples=13):
    record = evaluate.evaluate_workdir(out)
    batches = list(data.build(evaluate.load_config(out), eval_only=True).eval_batches())
  images = np.concatenate([b["images"][b["mask"] > 0] for b in batches])
  labels = np.concatenate([b["labels"][b["mask"] > 0] for b in batches])
  images = np.asarray(data.on_device({"images": images}, 32)["images"])  # uint8 -> [-1, 1], as the model's step
  logits = np.asarray(keras_model(images, training=False), np.float64)
  shifted = logits - logits.max(1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  top5 = np.argsort(-logits, axis=1)[:, :5]
  assert record["final"] and record["split"] == "validation" and record["num_examples"] == len(labels) == 13
  assert (record["alpha"], record["resolution"], record["step"]) == (alpha, 32, 0)
  assert record["test_loss"] == pytest.approx(-log_probs[np.arange(13), labels].mean(), abs=1e-4)
  assert record["test_top1"] == pytest.approx((top5[:, 0] == labels).mean())
  assert record["test_top5"] == pytest.approx((top5 == labels[:, None]).any(1).mean())
  return record


@pytest.mark.slow
def test_converted_weights_evaluate_on_mock_imagenet_and_fill_the_report(tmp_path):
  """docs/pretrained.md's path end to end on tfds mock data: convert -> mnet_jax.evaluate -> python -m sweeps.report."""
  records = {}
  for alpha in (0.25, 0.5):
    name = f"{alpha}-32"
    records[name] = evaluate_on_mock_imagenet(random_keras_mobilenet(alpha, 32), alpha, str(tmp_path / name))
  result = subprocess.run([sys.executable, "-m", "sweeps.report", "--workdir", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  with open(tmp_path / "results.csv") as f:
    rows = {row["cell"]: row for row in csv.DictReader(f)}
  assert sorted(rows) == sorted(records)
  for name, record in records.items():
    assert rows[name]["status"] == "ok"
    assert float(rows[name]["test_top1"]) == pytest.approx(record["test_top1"])
    assert int(rows[name]["mult_adds"]) == record["mult_adds"]
  assert (tmp_path / "report.md").exists()


def test_keras_itself_loads_the_keras2_style_file(tmp_path, small_keras_model):
  """The file the parity test converts is one Keras's loader accepts the way it loads the official files
  (`model.load_weights('mobilenet_..._tf.h5')` in keras.applications), and it holds the same weights."""
  keras, _ = keras_modules()
  path = str(tmp_path / "mobilenet_2_5_128_tf.h5")
  save_legacy_h5(small_keras_model, path)
  rename_to_keras2(path)
  fresh = keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights=None, classifier_activation=None)
  fresh.load_weights(path)
  for expected, loaded in zip(small_keras_model.get_weights(), fresh.get_weights()):
    np.testing.assert_array_equal(expected, loaded)


# MobileNet V2 and V3 ------------------------------------------------------------------------------


def random_keras_family(model_name, alpha, resolution, minimalistic=False, preprocessing=False, include_top=True,
                        seed=0):
  """keras.applications MobileNetV2 / V3Large / V3Small with random kernels and biases and random BN statistics
  near those of a random batch (as random_keras_mobilenet); V3 with or without its Rescaling layer."""
  keras, _ = keras_modules()
  keras.utils.set_random_seed(seed)
  shape = (resolution, resolution, 3)
  if model_name == "mobilenet_v2":
    model = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, weights=None, include_top=include_top,
                                           classifier_activation=None)
  else:
    build = {"mobilenet_v3_large": keras.applications.MobileNetV3Large,
             "mobilenet_v3_small": keras.applications.MobileNetV3Small}[model_name]
    model = build(input_shape=shape, alpha=alpha, weights=None, minimalistic=minimalistic, include_top=include_top,
                  include_preprocessing=preprocessing, classifier_activation=None)
  rng = np.random.default_rng(seed)
  batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in batch_norms:
    channels = layer.get_weights()[0].shape
    layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels), np.zeros(channels),
                       np.ones(channels)])
    layer.momentum = 0.0
  batch = rng.uniform(-1, 1, (4, *shape))
  model(((batch + 1) * 127.5 if preprocessing else batch).astype(np.float32), training=True)
  for layer in batch_norms:
    gamma, beta, mean, variance = layer.get_weights()
    mean = mean + rng.normal(0, 0.2, mean.shape) * np.sqrt(variance)
    layer.set_weights([gamma, beta, mean, variance * rng.uniform(0.5, 2.0, variance.shape)])
  for layer in model.layers:
    weights = layer.get_weights()
    if len(weights) == 2 and not isinstance(layer, keras.layers.BatchNormalization):  # random biases
      layer.set_weights([weights[0], rng.normal(0, 0.5, weights[1].shape)])
  return model


def family_logits_difference(keras_model, variables, model_name, alpha, resolution, minimalistic=False,
                             preprocessing=False, seed=1):
  from mnet_jax import models
  images = np.random.default_rng(seed).uniform(-1, 1, (2, resolution, resolution, 3)).astype(np.float32)
  keras_images = (images + 1) * 127.5 if preprocessing else images  # Rescaling(1/127.5, offset=-1) undoes this
  expected = np.asarray(keras_model(keras_images, training=False))
  options = {"minimalistic": minimalistic} if model_name != "mobilenet_v2" else {}
  module = models.create(model_name, alpha, 1000, kernels="portable", **options)
  actual = np.asarray(jax.jit(functools.partial(module.apply, train=False))(variables, images))
  assert actual.shape == expected.shape == (2, 1000)
  assert np.abs(expected).max() > 0.5 and np.abs(expected[0] - expected[1]).max() > 0.05
  return float(np.abs(actual - expected).max())


@pytest.mark.parametrize("model_name, alpha, resolution, minimalistic, preprocessing, layout", [
    ("mobilenet_v2", 0.35, 64, False, False, "legacy_h5"),
    pytest.param("mobilenet_v2", 1.3, 45, False, False, "keras3_weights_h5", marks=pytest.mark.slow),
    ("mobilenet_v3_large", 0.75, 64, False, True, "keras3_weights_h5"),
    pytest.param("mobilenet_v3_large", 1.0, 33, True, False, "whole_model_h5", marks=pytest.mark.slow),
    pytest.param("mobilenet_v3_small", 1.0, 57, False, False, "legacy_h5", marks=pytest.mark.slow),
    ("mobilenet_v3_small", 0.5, 64, False, True, "model_object"),
])
@pytest.mark.slow
def test_family_logits_parity(tmp_path, model_name, alpha, resolution, minimalistic, preprocessing, layout):
  model = random_keras_family(model_name, alpha, resolution, minimalistic, preprocessing)
  options = dict(model_name=model_name, minimalistic=minimalistic)
  if layout == "model_object":
    variables = convert.variables_from_keras_model(model, alpha, **options)
  else:
    path = str(tmp_path / ("m.weights.h5" if layout == "keras3_weights_h5" else "m.h5"))
    if layout == "legacy_h5":
      save_legacy_h5(model, path)
    elif layout == "whole_model_h5":
      model.save(path)
    else:
      model.save_weights(path)
    variables = convert.variables_from_h5(path, alpha, **options)
  difference = family_logits_difference(model, variables, model_name, alpha, resolution, minimalistic, preprocessing)
  assert difference <= LOGITS_TOLERANCE


@functools.cache
def cached_v3_small():
  return random_keras_family("mobilenet_v3_small", 0.5, 64)


@pytest.mark.slow
def test_file_of_another_family_alpha_or_classes_is_refused_in_one_line(tmp_path):
  path = str(tmp_path / "v3_small_0.5.h5")
  save_legacy_h5(cached_v3_small(), path)
  refusals = [
      (dict(alpha=0.5, model_name="mobilenet_v2"), "has no Keras layer 'Conv1'; is it a Keras mobilenet_v2"),
      (dict(alpha=0.5, model_name="mobilenet_v3_large"), "needs"),
      (dict(alpha=0.75, model_name="mobilenet_v3_small"), "but mobilenet_v3_small with alpha=0.75 needs"),
      (dict(alpha=0.5, model_name="mobilenet_v3_small", num_classes=10), "Keras layer 'logits' kernel"),
      (dict(alpha=0.5, model_name="mobilenet_v3_small", minimalistic=True), "needs"),
      (dict(alpha=0.5, model_name="mobilenet_v1"), "has no Keras layer 'conv1'; is it a Keras mobilenet_v1"),
  ]
  for kwargs, message in refusals:
    with pytest.raises(ConfigError) as error:
      convert.variables_from_h5(path, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value), (kwargs, str(error.value))


@pytest.mark.slow
def test_command_line_converts_a_v3_file_and_refuses_another_family(tmp_path):
  model = cached_v3_small()
  path = str(tmp_path / "v3_small_0.5.weights.h5")
  model.save_weights(path)
  refused = str(tmp_path / "refused")
  result = run_cli("--model", "mobilenet_v2", "--keras-h5", path, "--alpha", "0.5", "--resolution", "64",
                   "--out", refused)
  assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not os.path.exists(refused)
  out = str(tmp_path / "v3s")
  result = run_cli("--model", "mobilenet_v3_small", "--keras-h5", path, "--alpha", "0.5", "--resolution", "64",
                   "--out", out)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(out, "config.json")) as f:
    config = json.load(f)
  assert (config["model"]["name"], config["alpha"], config["resolution"]) == ("mobilenet_v3_small", 0.5, 64)
  from mnet_jax import models
  module = models.create("mobilenet_v3_small", 0.5, 1000, kernels="portable")
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)))
  step, variables = checkpoint.restore_variables(out, abstract)
  assert step == 0
  assert family_logits_difference(model, variables, "mobilenet_v3_small", 0.5, 64) <= LOGITS_TOLERANCE


@pytest.mark.slow
def test_file_without_the_top_keeps_the_initialised_fc_layers_with_fresh_head():
  """A V3 file without its top lacks both fc layers; --fresh-head gives them the module's initialisation and
  takes every other layer from the file."""
  keras, _ = keras_modules()
  model = keras.applications.MobileNetV3Small(input_shape=(64, 64, 3), alpha=0.75, weights=None, include_top=False,
                                              include_preprocessing=False)
  variables = convert.variables_from_keras_model(model, 0.75, num_classes=10, model_name="mobilenet_v3_small",
                                                 fresh_head=True)
  module = convert.family_module("mobilenet_v3_small", 0.75, 10, False)
  initial = convert.initial_variables(module, abstract=False)["params"]
  fc_layers = [layer.name for layer in module.layers() if layer.kind == "fc"]
  assert len(fc_layers) == 2
  for name in fc_layers:
    jax.tree.map(np.testing.assert_array_equal, variables["params"][name], initial[name])
  stem = module.layers()[0].name
  assert not np.array_equal(variables["params"][stem]["kernel"], initial[stem]["kernel"])
