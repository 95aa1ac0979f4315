"""LiteRT export: a trained Fashion-MNIST cell end to end through the command line, the folded TF twin against the
JAX model for the model's options, a workdir without its dataset, and bad input."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from mnet_jax import convert, export, export_litert
from mnet_jax.export_tf import convert as to_tflite
from mnet_jax.models.mobilenet_v1 import MobileNetV1

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V1_OPS = {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "MEAN": 1, "FULLY_CONNECTED": 1}  # stem + 13 pw, 13 dw


def run(module, *flags, check=True):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  result = subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny Fashion-MNIST cell (alpha 0.25, 32 px, 20 steps, 256 test images) that no other test trains."""
  workdir = tmp_path_factory.mktemp("export") / "cell"
  run("mnet_jax.main", "--config", "mnet_jax/configs/fashion_mnist.py:runlocal", "--config.model.stem_stride=2",
      "--config.seed=7", "--workdir", str(workdir))
  return workdir


@pytest.fixture(scope="module")
def exported(trained):
  run("mnet_jax.export", "--workdir", str(trained), "--int8", "--weights", "per-channel,per-tensor",
      "--calibration-images", "16", "--threads", "1")
  with open(trained / "export" / "export.json") as f:
    return json.load(f)


@pytest.mark.slow
def test_exported_cell_agrees_with_jax_and_reports_int8_top1(exported):
  checks = exported["checks"]
  assert checks["num_examples"] == 256  # the whole test split of this config
  assert checks["max_abs_logit"] > 1  # the tolerance's scale: the largest JAX logit magnitude
  assert checks["max_abs_logit_diff"] <= 1e-4 * checks["max_abs_logit"]
  assert abs(checks["float32_top1"] - checks["jax_top1"]) <= 0.0005
  assert checks["jax_top1"] == pytest.approx(checks["run_top1"], abs=0.0005)  # the run's own evaluation
  assert checks["logits_within_tolerance"] and checks["top1_within_tolerance"]
  assert 0.0 <= checks["int8_top1"] <= 1.0
  assert checks["int8_minus_float32"] == pytest.approx(checks["int8_top1"] - checks["float32_top1"])
  assert exported["summary"]["int8_top1"] == checks["int8_top1"]
  assert exported["summary"]["int8_per_tensor_top1"] == checks["int8_per_tensor_top1"]
  assert exported["summary"]["float32_top1"] == checks["float32_top1"]
  assert checks["int8_per_tensor_minus_float32"] == pytest.approx(
      checks["int8_per_tensor_top1"] - checks["float32_top1"])
  assert "accuracy_skipped" not in exported


@pytest.mark.slow
def test_exported_models_hold_only_mobilenet_ops_and_documented_io(exported):
  for key in ("float32", "int8", "int8_per_tensor"):
    assert exported[key]["ops"] == V1_OPS  # BatchNorm folded, ReLU6 fused: nothing else
  assert exported["float32"]["input"]["dtype"] == "float32" and exported["float32"]["output"]["shape"] == [1, 10]
  assert exported["int8"]["input"]["dtype"] == exported["int8"]["output"]["dtype"] == "int8"
  # [-1, 1] inputs map onto int8: scale about 2 / 255, zero point about 0.
  assert exported["int8"]["input"]["scale"] == pytest.approx(2 / 255, rel=0.05)
  assert exported["int8"]["bytes"] < exported["float32"]["bytes"] / 2
  assert exported["int8"]["weights"] == "per-channel" and "16" in exported["int8"]["calibration"]
  assert exported["int8_per_tensor"]["weights"] == "per-tensor"
  assert exported["int8_per_tensor"]["file"] == "model_int8_per_tensor.tflite"
  ratios = exported["folded_depthwise_range_ratio"]
  assert sorted(ratios) == sorted(f"block{n}_dw" for n in range(1, 14)) and min(ratios.values()) >= 1.0
  assert exported["float32"]["bytes"] == os.path.getsize(os.path.join(exported["workdir"], "export",
                                                                      "model_float32.tflite"))


@pytest.mark.slow
def test_exported_latency_is_a_median_of_at_least_200_runs_per_thread_count(exported):
  for key in ("float32", "int8", "int8_per_tensor"):
    [one] = exported[key]["latency"]
    assert one["threads"] == 1 and one["runs"] >= 200 and one["latency_ms"] > 0
  assert exported["machine"]["cores"] >= 1 and exported["machine"]["cpu"]


@pytest.mark.slow
def test_both_exported_models_run_in_a_fresh_interpreter(exported):
  image = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
  outputs = {}
  for key in ("float32", "int8", "int8_per_tensor"):
    predictor = export_litert.Predictor(os.path.join(exported["workdir"], "export", exported[key]["file"]), 1)
    outputs[key] = predictor(image)
    assert outputs[key].shape == (1, 10) and np.all(np.isfinite(outputs[key]))
  # The int8 logits are the float ones up to quantization error (a few output steps).
  assert np.max(np.abs(outputs["int8"] - outputs["float32"])) < 20 * exported["int8"]["output"]["scale"]


@pytest.mark.slow
def test_export_with_the_same_options_is_skipped_and_other_options_redo_it(exported, trained, tmp_path):
  float_file = trained / "export" / "model_float32.tflite"
  before = os.stat(float_file).st_mtime_ns
  again = export.export_workdir(str(trained), int8=True, weights=["per-tensor", "per-channel"],
                                calibration_images_count=16, threads=[1])
  assert again == exported and os.stat(float_file).st_mtime_ns == before
  assert export.is_exported(str(trained), exported["options"])
  copy = tmp_path / "copy"
  shutil.copytree(trained, copy)
  other = export.export_workdir(str(copy), int8=True, weights="per-channel", calibration_images_count=16, threads=[1],
                                min_runs=5, min_seconds=0.0)
  assert other["options"]["weights"] == ["per-channel"] and other["options"]["latency"]["min_runs"] == 5
  assert other["int8"]["latency"][0]["runs"] >= 5 and "int8_per_tensor" not in other
  assert other["summary"]["int8_per_tensor_top1"] is None and other["summary"]["int8_top1"] is not None
  assert sorted(os.listdir(copy / "export")) == ["export.json", "model_float32.tflite", "model_int8.tflite"]


def random_variables(model, resolution, seed=0):
  """Initial variables with BatchNorm statistics and affine terms far from identity, so folding is exercised."""
  variables = jax.jit(model.init)(jax.random.PRNGKey(seed), np.zeros((1, resolution, resolution, 3), np.float32))
  rng = np.random.default_rng(seed)

  def perturb(path, leaf):
    name, shape = jax.tree_util.keystr(path), np.shape(leaf)
    if "'var'" in name:
      return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if "'mean'" in name or ("'bn'" in name and "'bias'" in name):
      return rng.normal(0.0, 0.3, shape).astype(np.float32)
    if "'scale'" in name:
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return np.asarray(leaf)
  return jax.tree_util.tree_map_with_path(perturb, variables)


@pytest.mark.parametrize("options, ops", [
    (dict(kernel_sizes=(3, 5, 7), kernel_split="exponential", num_classes=7),
     {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 39, "SPLIT_V": 13, "CONCATENATION": 13, "MEAN": 1, "FULLY_CONNECTED": 1}),
    (dict(variant="shallow", kernel_sizes=(5,), activation="relu", alpha=0.5, stem_stride=1),
     {"CONV_2D": 9, "DEPTHWISE_CONV_2D": 8, "MEAN": 1, "FULLY_CONNECTED": 1}),
    (dict(variant="full_conv", num_classes=3), {"CONV_2D": 14, "MEAN": 1, "FULLY_CONNECTED": 1}),
])
def test_folded_twin_matches_jax_for_kernel_sizes_variants_and_classes(options, ops):
  model = MobileNetV1(**{"alpha": 0.25, "num_classes": 10, "kernels": "portable", **options})
  variables = random_variables(model, 32)
  model_bytes = to_tflite(model, variables, 32)
  assert export_litert.op_counts(model_bytes) == ops
  images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  logits = export_litert.Predictor(model_bytes, 4)(images)
  assert np.max(np.abs(logits - np.asarray(jax.jit(model.apply)(variables, images)))) <= 1e-4


@pytest.mark.parametrize("weights", ["per-channel", "per-tensor"])
def test_int8_depthwise_filters_have_a_scale_per_channel_or_one_per_tensor(weights):
  model = MobileNetV1(alpha=0.25, num_classes=10, kernels="portable")
  variables = random_variables(model, 32)
  noise = list(np.random.default_rng(2).uniform(-1, 1, (4, 1, 32, 32, 3)).astype(np.float32))
  runner = export_litert.interpreter(to_tflite(model, variables, 32, int8=True, weights=weights, calibration=noise),
                                     delegates=False)
  tensors = {t["index"]: t for t in runner.get_tensor_details()}
  filters = [tensors[op["inputs"][1]] for op in runner._get_ops_details() if op["op_name"] == "DEPTHWISE_CONV_2D"]
  assert len(filters) == 13
  for tensor in filters:
    scales = tensor["quantization_parameters"]["scales"]
    assert tensor["dtype"] == np.int8
    assert len(scales) == (tensor["shape"][-1] if weights == "per-channel" else 1)


def test_workdir_without_its_dataset_exports_and_says_accuracy_was_skipped(tmp_path):
  model = MobileNetV1(alpha=0.25, num_classes=1000, kernels="portable")
  no_data = tmp_path / "no_imagenet"
  no_data.mkdir()
  workdir = str(tmp_path / "keras_like")
  convert.write_workdir(random_variables(model, 32), 0.25, 32, workdir, "random weights", data_dir=str(no_data))
  record = export.export_workdir(workdir, int8=True, calibration_images_count=4, threads=[1])
  assert "imagenet2012" in record["accuracy_skipped"] and "not at hand" in record["accuracy_skipped"]
  assert "float32_top1" not in record["checks"] and "top1_within_tolerance" not in record["checks"]
  assert "noise" in record["checks"]["inputs"] and record["checks"]["logits_within_tolerance"]
  assert "noise" in record["int8"]["calibration"]
  assert record["float32"]["ops"] == record["int8"]["ops"] == V1_OPS
  assert record["summary"]["litert_ms"] > 0 and record["summary"]["litert_int8_ms"] > 0
  assert record["float32"]["output"]["shape"] == [1, 1000]


def copy_run(trained, tmp_path, keep_metrics=True):
  workdir = tmp_path / "copy"
  shutil.copytree(trained, workdir, ignore=shutil.ignore_patterns("export"))
  if not keep_metrics:
    os.remove(workdir / "metrics.jsonl")
  return workdir


@pytest.mark.slow  # needs the trained cell
@pytest.mark.parametrize("case", ["no checkpoint", "unfinished run", "calibration 0", "unknown weights",
                                  "unwritable export dir"])
def test_bad_input_gives_one_line_and_writes_nothing(case, trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  flags, expected = ["--int8"], None
  if case == "no checkpoint":
    shutil.rmtree(workdir / "checkpoints")
    os.remove(workdir / "metrics.jsonl")
    expected = "no readable checkpoint"
  elif case == "unfinished run":
    with open(workdir / "metrics.jsonl") as f:
      lines = [line for line in f if '"final": true' not in line]
    with open(workdir / "metrics.jsonl", "w") as f:
      f.writelines(lines)
    expected = "unfinished"
  elif case == "calibration 0":
    flags += ["--calibration-images", "0"]
    expected = "--calibration-images 0 is not allowed"
  elif case == "unknown weights":
    flags += ["--weights", "per-channel,per-row"]
    expected = "--weights 'per-row' is unknown; allowed: per-channel, per-tensor"
  else:
    (workdir / "export").write_text("a file where the export directory goes")
    expected = "is not writable"
  result = run("mnet_jax.export", "--workdir", str(workdir), *flags, check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and expected in last, result.stderr[-2000:]
  if case == "unwritable export dir":
    assert (workdir / "export").read_text() == "a file where the export directory goes"
  else:
    assert not (workdir / "export").exists() or os.listdir(workdir / "export") == []



@pytest.mark.slow
def test_a_v3_run_exports_and_its_record_names_the_family(tmp_path):
  """A tiny MobileNet V3 Small run through `mnet_jax.export`: float32 LiteRT agrees with JAX, export.json names it."""
  workdir = tmp_path / "v3"
  run("mnet_jax.main", "--config", "mnet_jax/configs/fashion_mnist.py:runlocal", "--config.num_steps=2",
      "--config.model.name=mobilenet_v3_small", "--workdir", str(workdir))
  run("mnet_jax.export", "--workdir", str(workdir), "--threads", "1", "--min-runs", "5", "--min-seconds", "0")
  record = json.loads((workdir / "export" / "export.json").read_text())
  assert record["model"]["family"] == "mobilenet_v3_small" and record["model"]["minimalistic"] is False
  assert "kernel_sizes" not in record["model"] and record["checks"]["logits_within_tolerance"]

@pytest.mark.slow
@pytest.mark.parametrize("name,options", [("mobilenet_v2", {}), ("mobilenet_v3_large", {}),
                                          ("mobilenet_v3_small", {"minimalistic": True})])
def test_folded_twin_matches_jax_for_v2_and_v3(name, options):
  """The TF twin of V2/V3 (residual adds, squeeze-excite, hard-swish, linear projections, biased head fc), converted
  to LiteRT float32, gives the JAX model's logits."""
  from mnet_jax import models
  model = models.create(name, 0.35, 10, kernels="portable", **options)
  variables = random_variables(model, 32)
  model_bytes = to_tflite(model, variables, 32)
  images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  logits = export_litert.Predictor(model_bytes, 4)(images)
  assert np.max(np.abs(logits - np.asarray(jax.jit(model.apply)(variables, images)))) <= 1e-4
