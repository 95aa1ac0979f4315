"""What a run's workdir holds besides checkpoints and metrics.jsonl: config.json, the final record and its model
facts, and the one way this project writes a file atomically."""

import json
import os

import jax
import ml_collections

from mnet_jax import count
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import MobileNetV1, check_choice, check_resolution, VARIANTS
from mnet_jax.ops import resolve_kernels

CONFIG_FILE = "config.json"


def write_atomically(path, data):
  """Writes text or bytes to `path` through a temporary file beside it: readers see the old file or the new one,
  never a part (several processes may write the same path at once)."""
  temporary = f"{path}.{os.getpid()}.tmp"
  with open(temporary, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
  os.replace(temporary, path)


def model_from_config(config, num_classes):
  """The MobileNetV1 of config, its kernel set resolved for this process ('portable' or 'cpu')."""
  check_choice("variant", config.variant, VARIANTS)
  check_resolution(config.resolution)
  options = {k: v for k, v in config.model.to_dict().items() if v is not None}
  options["kernels"] = resolve_kernels(options.get("kernels", "auto"))
  if "kernel_sizes" in options:  # a list when the config comes from config.json
    options["kernel_sizes"] = tuple(options["kernel_sizes"])
  try:
    return MobileNetV1(alpha=config.alpha, num_classes=num_classes, variant=config.variant, **options)
  except TypeError as e:
    raise ConfigError(f"config.model has a field MobileNetV1 does not take: {e}") from None


def with_resolved_kernels(config):
  """A copy of config whose model.kernels is the kernel set this process runs ('portable' or 'cpu')."""
  config = config.copy_and_resolve_references()
  config.model.kernels = resolve_kernels(config.model.get("kernels", "auto"))
  return config


def config_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def load_config(workdir):
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read the run's config {path!r}: {e}") from None


def has_run(workdir):
  """Whether workdir holds metrics or a checkpoint: a run that its config.json belongs to."""
  checkpoints = os.path.join(workdir, "checkpoints")
  return os.path.exists(os.path.join(workdir, "metrics.jsonl")) or (os.path.isdir(checkpoints) and
                                                                    bool(os.listdir(checkpoints)))


def write_config(config, workdir):
  """Writes workdir/config.json, or checks that an existing one whose run has started (a checkpoint or metrics to
  resume from) holds the same config; a workdir with no run yet takes the new config. model.kernels may differ:
  a run resumes on another machine's kernel set (the same function up to rounding)."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = config_json(config)
  if os.path.exists(path) and has_run(workdir):
    with open(path) as f:
      old = json.load(f)
    new = json.loads(text)
    for fields in (old, new):
      fields.pop("wandb", None), fields.get("model", {}).pop("kernels", None)
    if old != new:
      changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
      raise ConfigError(f"workdir {workdir!r} holds a run with a different config (fields {', '.join(changed)} "
                        "differ); use a new workdir or the same config")
  if jax.process_index() == 0:
    write_atomically(path, text)
  return text


def model_facts(config, num_classes):
  model = model_from_config(config, num_classes)
  counts = count.count(config.alpha, config.resolution, config.variant, num_classes, model.min_depth, model.stem_stride,
                       model.kernel_sizes, model.kernel_split)
  return {"mult_adds": counts["mult_adds"], "params": counts["params"],
          "trainable_params": counts["trainable_params"], "alpha": config.alpha, "resolution": config.resolution,
          "variant": config.variant}


def final_record(step, evaluation, facts, train_seconds, images_per_second, kernels, num_devices, num_processes):
  """The final metrics line: the evaluation as test_*, the model facts, and how the training ran (its last attempt:
  time, images/s, kernel set, devices and processes)."""
  record = {"final": True, "step": step, "split": evaluation["split"]}
  record.update({f"test_{k}": v for k, v in evaluation.items() if k not in ("split", "num_examples")})
  record["num_examples"] = evaluation["num_examples"]
  record.update(facts)
  record.update(train_seconds=train_seconds, images_per_second=images_per_second, kernels=kernels,
                num_devices=num_devices, num_processes=num_processes)
  return record
