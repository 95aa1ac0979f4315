"""Exports a workdir's latest checkpoint to LiteRT (.tflite), checks it against the JAX model, measures latency.

  python -m mnet_jax.export --workdir W [--int8] [--weights per-channel|per-tensor] [--calibration-images N]
                            [--threads 1,2] [--again]

writes W/export/model_float32.tflite (and with --int8 W/export/model_int8.tflite) and W/export/export.json, each
atomically, export.json last; a workdir whose export.json was made with the same options is not exported again
(`export_workdir` is what a sweep calls per cell). docs/deployment.md says what the models take and return and
what export.json holds.
"""

import json
import os
import subprocess
import sys

import numpy as np

from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.export_tf import WEIGHTS

EXPORT_DIR = "export"
EXPORT_FILE = "export.json"
FLOAT_FILE = "model_float32.tflite"
INT8_FILE = "model_int8.tflite"
DEFAULT_CALIBRATION_IMAGES = 300
LOGIT_TOLERANCE = 1e-4  # absolute, float model against JAX
TOP1_TOLERANCE = 0.0005  # 0.05 points
NOISE_IMAGES = 8  # logits check on uniform noise when the dataset is not at hand
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_threads():
  from mnet_jax.export_litert import cores
  return sorted({1, cores()})


def check_options(weights, calibration_images, threads):
  if weights not in WEIGHTS:
    raise ConfigError(f"--weights {weights!r} is unknown; allowed: {', '.join(WEIGHTS)}")
  if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 1:
    raise ConfigError(f"--calibration-images {calibration_images!r} is not allowed: it must be an integer >= 1")
  if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
    raise ConfigError(f"--threads {threads!r} is not allowed: one or more integers >= 1, e.g. 1,2")


def restore(workdir):
  """(config, step, variables as numpy, final record or None) of a workdir ready to export; a ConfigError for one
  that is not (no config, an unfinished run, no readable checkpoint)."""
  import jax
  from mnet_jax import checkpoint, metrics
  from mnet_jax.workdir import load_config
  config = load_config(workdir)
  final = metrics.final_metrics(workdir)
  if final is None and metrics.read_metrics(workdir):
    raise ConfigError(f"the run in {workdir!r} is unfinished (metrics.jsonl has no final record); finish it with "
                      "mnet_jax.main, or evaluate its checkpoint with mnet_jax.evaluate, then export")
  checkpoints = checkpoint.manager(workdir, read_only=True) if os.path.isdir(checkpoint.directory(workdir)) else None
  restored = None if checkpoints is None else checkpoint.restore_latest(checkpoints, {"variables": None})
  if restored is None:
    raise ConfigError(f"no readable checkpoint in {checkpoint.directory(workdir)!r}")
  step, items, _ = restored
  variables = {k: v for k, v in items["variables"].items() if k in ("params", "batch_stats")}
  return config, step, jax.tree.map(np.asarray, variables), final


def export_model(config, num_classes):
  """The Flax model of config, computing in float32 (what the float .tflite computes)."""
  from mnet_jax.workdir import model_from_config
  config = config.copy_and_resolve_references()
  config.model.kernels = "auto"  # config.json records the training's kernel set; this process runs its own
  if "dtype" in config.model:
    config.model.dtype = "float32"
  return model_from_config(config, num_classes)


def writable_export_dir(workdir):
  """workdir/export, created and checked writable before anything is converted."""
  path = os.path.join(workdir, EXPORT_DIR)
  probe = os.path.join(path, f".probe.{os.getpid()}")
  try:
    os.makedirs(path, exist_ok=True)
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"the export directory {path!r} is not writable: {e.strerror or e}") from None
  return path


def load_data(config, int8):
  """(data, None), or (None, why) when the run's dataset is not at hand (e.g. converted ImageNet weights)."""
  from mnet_jax import data as data_lib
  try:
    return data_lib.build(config, eval_only=not int8), None
  except (ConfigError, OSError) as e:
    return None, f"dataset {config.data.name!r} is not at hand: {str(e).splitlines()[0] if str(e) else e}"


def calibration_images(config, data, count):
  """(count float32 (1, r, r, 3) training images as the network sees them, a description); uniform noise in
  [-1, 1] when the dataset is not at hand (enough for a latency measurement, not for accuracy)."""
  from mnet_jax import data as data_lib
  r = config.resolution
  if data is None:
    noise = np.random.default_rng(0).uniform(-1, 1, (count, 1, r, r, 3)).astype(np.float32)
    return list(noise), f"{count} uniform-noise images in [-1, 1] (the dataset is not at hand)"
  images = []
  for batch in data.train_batches(0):
    images.extend(np.asarray(data_lib.on_device(batch, r)["images"], np.float32)[:, None])
    if len(images) >= count:
      break
  return images[:count], f"the first {count} images of the training stream of {config.data.name!r}"


def check_against_jax(model, variables, config, data, float_model, int8_model):
  """Logits and top-1 of the float (and int8) .tflite against the JAX model, over the whole test split; over
  uniform noise images (logits only) when data is None."""
  import jax
  from mnet_jax import data as data_lib
  from mnet_jax.export_litert import Predictor
  forward = jax.jit(lambda x: model.apply(variables, x, train=False))
  if data is None:
    images = np.random.default_rng(1).uniform(-1, 1, (NOISE_IMAGES, config.resolution, config.resolution, 3))
    images = images.astype(np.float32)
    diff = float(np.max(np.abs(Predictor(float_model, NOISE_IMAGES)(images) - np.asarray(forward(images)))))
    return {"inputs": f"{NOISE_IMAGES} uniform-noise images in [-1, 1]", "max_abs_logit_diff": diff}
  predictors, hits, count, diff = None, {"jax": 0.0, "float32": 0.0, "int8": 0.0}, 0.0, 0.0
  for batch in data.eval_batches():
    images = np.asarray(data_lib.on_device(batch, config.resolution)["images"], np.float32)
    if predictors is None:
      predictors = {"float32": Predictor(float_model, len(images))}
      if int8_model is not None:
        predictors["int8"] = Predictor(int8_model, len(images))
    mask, labels = batch["mask"] > 0, batch["labels"]
    reference = np.asarray(forward(images))
    outputs = {"jax": reference, **{name: p(images) for name, p in predictors.items()}}
    diff = max(diff, float(np.max(np.abs(outputs["float32"] - reference)[mask])))
    for name, logits in outputs.items():
      hits[name] += float(np.sum((np.argmax(logits, -1) == labels) & mask))
    count += float(np.sum(mask))
  result = {"inputs": f"the whole {config.data.eval_split!r} split", "split": config.data.eval_split,
            "num_examples": int(count), "max_abs_logit_diff": diff, "jax_top1": hits["jax"] / count,
            "float32_top1": hits["float32"] / count}
  if int8_model is not None:
    result["int8_top1"] = hits["int8"] / count
    result["int8_minus_float32"] = result["int8_top1"] - result["float32_top1"]
  return result


def measure_latency(path, threads):
  """Batch-1 latency of the model at `path` per thread count, in a fresh process (nothing else runs in it)."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
  result = subprocess.run([sys.executable, "-m", "mnet_jax.export_litert", "--latency", path, "--threads",
                           ",".join(map(str, threads))], capture_output=True, text=True, env=env)
  if result.returncode != 0:
    raise RuntimeError(f"latency measurement of {path} failed: {result.stderr[-2000:]}")
  return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def model_record(path, model_bytes, threads):
  from mnet_jax.export_litert import interpreter, io_details, op_counts
  return {"file": os.path.basename(path), "bytes": len(model_bytes), "ops": op_counts(model_bytes),
          **io_details(interpreter(model_bytes)), "latency": measure_latency(path, threads)}


def export_workdir(workdir, int8=False, weights="per-channel", calibration_images_count=DEFAULT_CALIBRATION_IMAGES,
                   threads=None, again=False, log=print):
  """Exports workdir (see the module docstring) and returns export.json's record; a workdir already exported with
  the same options returns its record without work unless `again`."""
  import tensorflow as tf
  from mnet_jax import count as count_lib
  from mnet_jax.export_litert import machine
  from mnet_jax.export_tf import convert, depthwise_range_ratios
  from mnet_jax.workdir import write_atomically
  threads = default_threads() if threads is None else list(threads)
  check_options(weights, calibration_images_count, threads)
  workdir = os.path.abspath(workdir)
  options = {"int8": bool(int8), "weights": weights, "calibration_images": calibration_images_count,
             "threads": threads}
  record_path = os.path.join(workdir, EXPORT_DIR, EXPORT_FILE)
  if not again and os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
    if record.get("options") == options:
      return record
  config, step, variables, final = restore(workdir)
  out = writable_export_dir(workdir)
  num_classes = int(variables["params"]["classifier"]["bias"].shape[0])
  model = export_model(config, num_classes)
  data, skipped = load_data(config, int8)
  float_bytes = convert(model, variables, config.resolution)
  int8_bytes, calibration = None, None
  if int8:
    images, calibration = calibration_images(config, data, calibration_images_count)
    int8_bytes = convert(model, variables, config.resolution, int8=True, weights=weights, calibration=images)
  checks = check_against_jax(model, variables, config, data, float_bytes, int8_bytes)
  checks["logits_within_tolerance"] = checks["max_abs_logit_diff"] <= LOGIT_TOLERANCE
  if data is not None:
    checks["top1_within_tolerance"] = abs(checks["float32_top1"] - checks["jax_top1"]) <= TOP1_TOLERANCE
    if final is not None and "test_top1" in final:
      checks["run_top1"] = final["test_top1"]
  counts = count_lib.count(config.alpha, config.resolution, config.variant, num_classes, model.min_depth,
                           model.stem_stride, model.kernel_sizes, model.kernel_split)
  record = {"workdir": workdir, "step": step, "model": {
      "family": "mobilenet_v1", "alpha": config.alpha, "resolution": config.resolution, "variant": config.variant,
      "num_classes": num_classes, "kernel_sizes": list(model.kernel_sizes), "kernel_split": model.kernel_split,
      "activation": model.activation, "mult_adds": counts["mult_adds"]},
      "options": options, "path": f"TF twin of the layer spec, BatchNorm folded, tf.lite.TFLiteConverter "
                                  f"(TensorFlow {tf.__version__})",
      "machine": machine(), "tolerances": {"max_abs_logit_diff": LOGIT_TOLERANCE, "top1": TOP1_TOLERANCE},
      "checks": checks}
  if skipped:
    record["accuracy_skipped"] = skipped
  files = [(FLOAT_FILE, "float32", float_bytes)] + ([(INT8_FILE, "int8", int8_bytes)] if int8 else [])
  for name, _, model_bytes in files:
    write_atomically(os.path.join(out, name), model_bytes)
  for name, key, model_bytes in files:
    log(f"measuring {name} ...")
    record[key] = model_record(os.path.join(out, name), model_bytes, threads)
  if int8:
    record["int8"].update(weights=weights, calibration=calibration,
                          folded_depthwise_range_ratio=depthwise_range_ratios(model, variables))
  elif os.path.exists(os.path.join(out, INT8_FILE)):
    os.remove(os.path.join(out, INT8_FILE))  # an earlier --int8 export's model does not match this record
  record["summary"] = summary(record)
  write_atomically(record_path, json.dumps(record, indent=2))
  return record


def summary(record):
  """The figures a results table takes: 1-thread latencies, the float model's size, int8 top-1."""
  def one_thread(key):
    return next((m["latency_ms"] for m in record.get(key, {}).get("latency", []) if m["threads"] == 1), None)
  return {"litert_ms": one_thread("float32"), "litert_int8_ms": one_thread("int8"),
          "int8_top1": record["checks"].get("int8_top1"), "tflite_bytes": record["float32"]["bytes"]}


def parse_threads(text):
  try:
    return [int(t) for t in text.split(",")]
  except ValueError:
    raise ConfigError(f"--threads {text!r} is not allowed: one or more integers >= 1, e.g. 1,2") from None


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m mnet_jax.export", description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a finished run, or converted weights")
  parser.add_argument("--int8", action="store_true", help="also write the full-integer int8 model")
  parser.add_argument("--weights", default="per-channel", help=f"int8 weight scales: {', '.join(WEIGHTS)}")
  parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                      help="training images the int8 ranges are calibrated on")
  parser.add_argument("--threads", help="LiteRT thread counts to time (default: 1 and every core)")
  parser.add_argument("--again", action="store_true", help="export again even if export.json matches")
  args = parser.parse_args(argv)
  threads = None if args.threads is None else parse_threads(args.threads)
  check_options(args.weights, args.calibration_images, threads or [1])
  from mnet_jax import process
  process.setup_process()
  record = export_workdir(args.workdir, args.int8, args.weights, args.calibration_images, threads, args.again,
                          log=lambda line: print(line, file=sys.stderr))
  print(json.dumps({"export": os.path.join(record["workdir"], EXPORT_DIR, EXPORT_FILE), **record["summary"],
                    **{k: v for k, v in record["checks"].items() if k != "inputs"}}))
  failed = [k for k, v in record["checks"].items() if k.endswith("_within_tolerance") and not v]
  if failed:
    sys.exit(f"error: the exported float model fails {', '.join(failed)} (export.json holds the figures)")


if __name__ == "__main__":
  main()
