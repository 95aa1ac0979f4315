"""Exports a workdir's latest checkpoint to LiteRT (.tflite), checks it against the JAX model, measures latency.

  python -m mnet_jax.export --workdir W [--int8] [--weights per-channel[,per-tensor]] [--calibration-images N]
                            [--threads 1,2] [--min-runs 200] [--min-seconds 1] [--again]

writes W/export/model_float32.tflite (with --int8 also W/export/model_int8.tflite, int8 weights with a scale per
channel, and/or model_int8_per_tensor.tflite, one scale per tensor) and W/export/export.json, each atomically,
export.json last; a workdir whose export.json was made with the same options is not exported again
(`export_workdir` is what a sweep calls per cell). docs/deployment.md says what the models take and return and
what export.json holds.
"""

import json
import os
import subprocess
import sys

import numpy as np

from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.export_litert import MIN_RUNS, MIN_SECONDS
from mnet_jax.export_tf import WEIGHTS

EXPORT_DIR = "export"
EXPORT_FILE = "export.json"
FLOAT_FILE = "model_float32.tflite"
# int8 weight scales -> (export.json's key for the model, its file); one export may write both
INT8_MODELS = {"per-channel": ("int8", "model_int8.tflite"),
               "per-tensor": ("int8_per_tensor", "model_int8_per_tensor.tflite")}
DEFAULT_CALIBRATION_IMAGES = 300
# The float model's logits against JAX's: the largest difference, relative to the largest JAX logit magnitude (at
# least 1): two float32 runtimes sum in orders that differ by CPU (AVX-512, AVX2; docs/perf-log.md, 2026-12-06
# ae42654).
LOGIT_TOLERANCE = 1e-4
TOP1_TOLERANCE = 0.0005  # 0.05 points
NOISE_IMAGES = 8  # logits check on uniform noise when the dataset is not at hand
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_threads():
  from mnet_jax.export_litert import cores
  return sorted({1, cores()})


def weights_of(weights):
  """The int8 weight scales asked for ("per-channel", "per-tensor,per-channel", or a sequence of them) as a tuple in
  WEIGHTS' order."""
  items = weights.split(",") if isinstance(weights, str) else list(weights)
  for item in items:
    if item not in WEIGHTS:
      raise ConfigError(f"--weights {item!r} is unknown; allowed: {', '.join(WEIGHTS)}, or both joined by a comma")
  if not items:
    raise ConfigError(f"--weights {weights!r} names no scales; allowed: {', '.join(WEIGHTS)}")
  return tuple(w for w in WEIGHTS if w in items)


def check_options(weights, calibration_images, threads, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS):
  weights_of(weights)
  if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 1:
    raise ConfigError(f"--calibration-images {calibration_images!r} is not allowed: it must be an integer >= 1")
  if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
    raise ConfigError(f"--threads {threads!r} is not allowed: one or more integers >= 1, e.g. 1,2")
  if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
    raise ConfigError(f"--min-runs {min_runs!r} is not allowed: it must be an integer >= 1")
  if isinstance(min_seconds, bool) or not isinstance(min_seconds, (int, float)) or not min_seconds >= 0:
    raise ConfigError(f"--min-seconds {min_seconds!r} is not allowed: it must be a number >= 0")


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


def check_against_jax(model, variables, config, data, float_model, int8_models):
  """Logits and top-1 of the float (and each int8: {key: bytes}) .tflite against the JAX model, over the whole test
  split; over uniform noise images (logits only) when data is None."""
  import jax
  from mnet_jax import data as data_lib
  from mnet_jax.export_litert import Predictor
  forward = jax.jit(lambda x: model.apply(variables, x, train=False))
  if data is None:
    images = np.random.default_rng(1).uniform(-1, 1, (NOISE_IMAGES, config.resolution, config.resolution, 3))
    images = images.astype(np.float32)
    reference = np.asarray(forward(images))
    return {"inputs": f"{NOISE_IMAGES} uniform-noise images in [-1, 1]",
            "max_abs_logit_diff": float(np.max(np.abs(Predictor(float_model, NOISE_IMAGES)(images) - reference))),
            "max_abs_logit": float(np.max(np.abs(reference)))}
  predictors, hits, count, diff = None, {"jax": 0.0, "float32": 0.0, **{key: 0.0 for key in int8_models}}, 0.0, 0.0
  largest = 0.0
  for batch in data.eval_batches():
    images = np.asarray(data_lib.on_device(batch, config.resolution)["images"], np.float32)
    if predictors is None:
      predictors = {"float32": Predictor(float_model, len(images))}
      predictors.update((key, Predictor(int8_model, len(images))) for key, int8_model in int8_models.items())
    mask, labels = batch["mask"] > 0, batch["labels"]
    reference = np.asarray(forward(images))
    outputs = {"jax": reference, **{name: p(images) for name, p in predictors.items()}}
    diff = max(diff, float(np.max(np.abs(outputs["float32"] - reference)[mask])))
    largest = max(largest, float(np.max(np.abs(reference)[mask])))
    for name, logits in outputs.items():
      hits[name] += float(np.sum((np.argmax(logits, -1) == labels) & mask))
    count += float(np.sum(mask))
  result = {"inputs": f"the whole {config.data.eval_split!r} split", "split": config.data.eval_split,
            "num_examples": int(count), "max_abs_logit_diff": diff, "max_abs_logit": largest,
            "jax_top1": hits["jax"] / count,
            "float32_top1": hits["float32"] / count}
  for key in int8_models:
    result[f"{key}_top1"] = hits[key] / count
    result[f"{key}_minus_float32"] = result[f"{key}_top1"] - result["float32_top1"]
  return result


def measure_latency(path, threads, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS):
  """Batch-1 latency of the model at `path` per thread count, in a fresh process (nothing else runs in it)."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
  result = subprocess.run([sys.executable, "-m", "mnet_jax.export_litert", "--latency", path, "--threads",
                           ",".join(map(str, threads)), "--min-runs", str(min_runs), "--min-seconds",
                           str(min_seconds)], capture_output=True, text=True, env=env)
  if result.returncode != 0:
    raise RuntimeError(f"latency measurement of {path} failed: {result.stderr[-2000:]}")
  return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def model_record(path, model_bytes, threads, min_runs, min_seconds):
  from mnet_jax.export_litert import interpreter, io_details, op_counts
  return {"file": os.path.basename(path), "bytes": len(model_bytes), "ops": op_counts(model_bytes),
          **io_details(interpreter(model_bytes)), "latency": measure_latency(path, threads, min_runs, min_seconds)}


def export_options(int8=False, weights="per-channel", calibration_images_count=DEFAULT_CALIBRATION_IMAGES,
                   threads=None, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS):
  """export.json's `options` for these arguments, checked (a ConfigError for a bad one)."""
  threads = default_threads() if threads is None else list(threads)
  check_options(weights, calibration_images_count, threads, min_runs, min_seconds)
  return {"int8": bool(int8), "weights": list(weights_of(weights)), "calibration_images": calibration_images_count,
          "threads": threads, "latency": {"min_runs": min_runs, "min_seconds": float(min_seconds)}}


def is_exported(workdir, options):
  """Whether workdir's export.json was written with these options (export_options)."""
  path = os.path.join(workdir, EXPORT_DIR, EXPORT_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f).get("options") == options


def export_workdir(workdir, int8=False, weights="per-channel", calibration_images_count=DEFAULT_CALIBRATION_IMAGES,
                   threads=None, again=False, log=print, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS):
  """Exports workdir (see the module docstring) and returns export.json's record; a workdir already exported with
  the same options returns its record without work unless `again`. `weights`: one of WEIGHTS or several (a
  sequence or comma-joined), an int8 model each; min_runs and min_seconds bound each latency measurement."""
  options = export_options(int8, weights, calibration_images_count, threads, min_runs, min_seconds)
  threads, weights = options["threads"], weights_of(weights)
  workdir = os.path.abspath(workdir)
  record_path = os.path.join(workdir, EXPORT_DIR, EXPORT_FILE)
  if not again and os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
    if record.get("options") == options:
      return record
  config, step, variables, final = restore(workdir)
  out = writable_export_dir(workdir)
  import tensorflow as tf  # after the workdir's checks: a bad workdir is refused without TensorFlow's start-up
  from mnet_jax import count as count_lib
  from mnet_jax.export_litert import machine
  from mnet_jax.export_tf import convert, depthwise_range_ratios
  from mnet_jax.workdir import model_name, write_atomically
  num_classes = int(variables["params"]["classifier"]["bias"].shape[0])
  model = export_model(config, num_classes)
  data, skipped = load_data(config, int8)
  float_bytes = convert(model, variables, config.resolution)
  int8_models, calibration = {}, None  # export.json key -> .tflite bytes
  if int8:
    images, calibration = calibration_images(config, data, calibration_images_count)
    for scales in weights:
      int8_models[INT8_MODELS[scales][0]] = convert(model, variables, config.resolution, int8=True, weights=scales,
                                                    calibration=images)
  checks = check_against_jax(model, variables, config, data, float_bytes, int8_models)
  checks["logits_within_tolerance"] = (checks["max_abs_logit_diff"]
                                       <= LOGIT_TOLERANCE * max(1.0, checks["max_abs_logit"]))
  if data is not None:
    checks["top1_within_tolerance"] = abs(checks["float32_top1"] - checks["jax_top1"]) <= TOP1_TOLERANCE
    if final is not None and "test_top1" in final:
      checks["run_top1"] = final["test_top1"]
  described = {"family": model_name(config), "alpha": config.alpha, "resolution": config.resolution,
               "variant": config.variant, "num_classes": num_classes,
               "mult_adds": sum(c.mult_adds for c in count_lib.count_layers(model.layers(), config.resolution))}
  for field in ("kernel_sizes", "kernel_split", "activation", "minimalistic"):  # the family's own options
    if hasattr(model, field):
      value = getattr(model, field)
      described[field] = list(value) if isinstance(value, tuple) else value
  record = {"workdir": workdir, "step": step, "model": described,
      "options": options, "path": f"TF twin of the layer spec, BatchNorm folded, tf.lite.TFLiteConverter "
                                  f"(TensorFlow {tf.__version__})",
      "machine": machine(), "tolerances": {"max_abs_logit_diff": LOGIT_TOLERANCE, "top1": TOP1_TOLERANCE},
      "checks": checks, "folded_depthwise_range_ratio": depthwise_range_ratios(model, variables)}
  if skipped:
    record["accuracy_skipped"] = skipped
  files = [(FLOAT_FILE, "float32", float_bytes)] + [(INT8_MODELS[w][1], INT8_MODELS[w][0],
                                                      int8_models[INT8_MODELS[w][0]]) for w in weights if int8]
  if os.path.exists(record_path):
    os.remove(record_path)  # it describes other files: an export interrupted from here on leaves no record
  for name, _, model_bytes in files:
    write_atomically(os.path.join(out, name), model_bytes)
  for _, name in INT8_MODELS.values():
    if name not in [f for f, _, _ in files] and os.path.exists(os.path.join(out, name)):
      os.remove(os.path.join(out, name))  # an earlier export's int8 model that this record does not describe
  for name, key, model_bytes in files:
    log(f"measuring {name} ...")
    record[key] = model_record(os.path.join(out, name), model_bytes, threads, min_runs, min_seconds)
  for scales in weights if int8 else ():
    record[INT8_MODELS[scales][0]].update(weights=scales, calibration=calibration)
  record["summary"] = summary(record)
  write_atomically(record_path, json.dumps(record, indent=2))
  return record


def summary(record):
  """The figures a results table takes: 1-thread latencies, the float model's size, the float and int8 models' top-1
  on the test split (None where not made or not at hand)."""
  def one_thread(key):
    return next((m["latency_ms"] for m in record.get(key, {}).get("latency", []) if m["threads"] == 1), None)
  checks = record["checks"]
  return {"litert_ms": one_thread("float32"), "litert_int8_ms": one_thread("int8"),
          "int8_top1": checks.get("int8_top1"), "tflite_bytes": record["float32"]["bytes"],
          "float32_top1": checks.get("float32_top1"), "litert_int8_per_tensor_ms": one_thread("int8_per_tensor"),
          "int8_per_tensor_top1": checks.get("int8_per_tensor_top1")}


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
  parser.add_argument("--weights", default="per-channel", help=f"int8 weight scales: {', '.join(WEIGHTS)}, or both "
                      "joined by a comma (an int8 model each)")
  parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                      help="training images the int8 ranges are calibrated on")
  parser.add_argument("--threads", help="LiteRT thread counts to time (default: 1 and every core)")
  parser.add_argument("--min-runs", type=int, default=MIN_RUNS, help="latency: at least this many invocations")
  parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help="latency: and at least this long")
  parser.add_argument("--again", action="store_true", help="export again even if export.json matches")
  args = parser.parse_args(argv)
  threads = None if args.threads is None else parse_threads(args.threads)
  check_options(args.weights, args.calibration_images, threads or [1], args.min_runs, args.min_seconds)
  from mnet_jax import process
  process.setup_process()
  record = export_workdir(args.workdir, args.int8, args.weights, args.calibration_images, threads, args.again,
                          log=lambda line: print(line, file=sys.stderr), min_runs=args.min_runs,
                          min_seconds=args.min_seconds)
  print(json.dumps({"export": os.path.join(record["workdir"], EXPORT_DIR, EXPORT_FILE), **record["summary"],
                    **{k: v for k, v in record["checks"].items() if k != "inputs"}}))
  failed = [k for k, v in record["checks"].items() if k.endswith("_within_tolerance") and not v]
  if failed:
    sys.exit(f"error: the exported float model fails {', '.join(failed)} (export.json holds the figures)")


if __name__ == "__main__":
  main()
