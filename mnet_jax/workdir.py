"""What a run's workdir holds besides checkpoints and metrics.jsonl: config.json, the final record and its model
facts, and the one way this project writes a file atomically."""

import json
import os

import jax
import ml_collections

from mnet_jax import count, models
from mnet_jax.errors import ConfigError
from mnet_jax.models.spec import check_resolution
from mnet_jax.ops import resolve_kernels

CONFIG_FILE = "config.json"


def write_atomically(path, data):
  """Writes text or bytes to `path` through a temporary file beside it: readers see the old file or the new one,
  never a part (several processes may write the same path at once)."""
  temporary = f"{path}.{os.getpid()}.tmp"
  with open(temporary, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
  os.replace(temporary, path)


def model_name(config):
  """config.model.name; 'mobilenet_v1' for a config.json written before the field existed."""
  return config.model.get("name", "mobilenet_v1")


def model_options(config):
  """The module options of config's family: config.variant and the config.model fields it takes (a field of
  another family alone must keep its default, else a ConfigError)."""
  fields = {k: v for k, v in config.model.to_dict().items() if v is not None and k != "name"}
  family_fields = {k: fields.pop(k) for k in models.FAMILY_OPTIONS if k in fields}
  options = models.model_options(model_name(config), variant=config.get("variant", "standard"), **family_fields)
  if "kernel_sizes" in fields:  # a list when the config comes from config.json
    fields["kernel_sizes"] = tuple(fields["kernel_sizes"])
  return {**fields, **options}


def model_from_config(config, num_classes):
  """The module of config's family (config.model.name, through mnet_jax.models), its kernel set resolved for this
  process ('portable' or 'cpu')."""
  check_resolution(config.resolution)
  options = model_options(config)
  options["kernels"] = resolve_kernels(options.get("kernels", "auto"))
  return models.create(model_name(config), config.alpha, num_classes, **options)


def with_resolved_kernels(config):
  """A copy of config whose model.kernels is the kernel set this process runs ('portable' or 'cpu')."""
  config = config.copy_and_resolve_references()
  config.model.kernels = resolve_kernels(config.model.get("kernels", "auto"))
  return config


def config_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


# Config fields added after runs were made, with the value that means what such a run did: a config.json without
# them reads as if it held these.
ADDED_FIELDS = {
    "model": {"name": "mobilenet_v1", "minimalistic": False, "pointwise_groups": 1, "channel_shuffle": False,
              "depthwise_factorization": "none"},
    "distill": {"teacher": None, "temperature": 4.0, "weight": 0.5, "teacher_checksum": None},
}


def with_added_fields(fields):
  """A config.json's fields with ADDED_FIELDS filled in where they are missing."""
  for section, defaults in ADDED_FIELDS.items():
    present = fields.setdefault(section, {})
    for key, value in defaults.items():
      present.setdefault(key, value)
  return fields


def load_config(workdir):
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(with_added_fields(json.load(f)))
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
      old = with_added_fields(json.load(f))
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
  """What the final record says of the model: its family, alpha, resolution, number of classes and counts."""
  model = model_from_config(config, num_classes)
  counts = count.count_layers(model.layers(), config.resolution)
  return {"mult_adds": sum(c.mult_adds for c in counts), "params": sum(c.params for c in counts),
          "trainable_params": sum(c.trainable_params for c in counts), "model": model_name(config),
          "minimalistic": bool(config.model.get("minimalistic", False)), "alpha": config.alpha,
          "resolution": config.resolution, "num_classes": num_classes, "variant": config.get("variant", "standard")}


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
