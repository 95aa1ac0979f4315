"""Knowledge distillation: a finished run (the teacher) trains this one through the loss
`(1 - weight) * cross-entropy + weight * T^2 * KL(teacher_T || student_T)` (Hinton et al., 2015), where `_T` is the
softmax of the logits divided by the temperature T.

The teacher is the workdir of a finished run on the same dataset, at any width and resolution: its model is built
from its config.json, its newest checkpoint's `variables` are restored once, replicated, and it runs frozen, in
evaluation mode, inside the jitted train step on the student's augmented batch, resized on the device to the
teacher's resolution when that differs. config.json records the teacher's path and the checksum of that checkpoint;
a run that resumes with a changed teacher is refused.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from mnet_jax import checkpoint, metrics as metrics_lib
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import MIN_RESOLUTION
from mnet_jax.workdir import CONFIG_FILE, has_run, load_config, model_from_config


def check_config(config):
  """Checks config.distill without writing anything: temperature > 0, weight in [0, 1], and a teacher (when set)
  that is a finished run on the same dataset."""
  fields = config.get("distill")
  if fields is None:
    return
  temperature, weight = fields.temperature, fields.weight
  if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
    raise ConfigError(f"distill.temperature={temperature!r} is not allowed: it must be a number > 0")
  if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
    raise ConfigError(f"distill.weight={weight!r} is not allowed: it must be a number in [0, 1]")
  if fields.teacher is None:
    return
  teacher = fields.teacher
  if not os.path.isfile(os.path.join(teacher, CONFIG_FILE)):
    raise ConfigError(f"distill.teacher={teacher!r} is not a run's workdir (no {CONFIG_FILE}); allowed: the workdir "
                      "of a finished training run")
  if metrics_lib.final_metrics(teacher) is None:
    raise ConfigError(f"distill.teacher={teacher!r} has not finished (no final line in its metrics.jsonl); run its "
                      "training command again to finish it")
  teacher_data = load_config(teacher).data.name
  if teacher_data != config.data.name:
    raise ConfigError(f"distill.teacher={teacher!r} was trained on {teacher_data!r}; allowed: a run on this run's "
                      f"dataset, {config.data.name!r}")
  latest_variables(teacher)


def latest_variables(teacher):
  """(step, directory) of the `variables` item of the teacher's newest checkpoint."""
  checkpoints = checkpoint.manager(teacher, read_only=True)
  steps = checkpoints.all_steps()
  checkpoints.close()
  if not steps:
    raise ConfigError(f"distill.teacher={teacher!r} holds no checkpoint; allowed: the workdir of a finished "
                      "training run")
  step = max(steps)
  return step, os.path.join(checkpoint.directory(teacher), str(step), "variables")


def checksum(directory):
  """sha256 of every file under directory: relative paths and contents, in sorted order."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      digest.update(os.path.relpath(path, directory).encode() + b"\0")
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
  return "sha256:" + digest.hexdigest()


def with_teacher_checksum(config, workdir):
  """A copy of config with distill.teacher made absolute and distill.teacher_checksum the checksum of the
  teacher's newest checkpoint. Refuses a workdir whose run started from another checkpoint of the teacher, and a
  teacher_checksum set in the config that the teacher no longer matches."""
  if config.get("distill") is None or config.distill.teacher is None:
    return config
  config = config.copy_and_resolve_references()
  teacher = config.distill.teacher = os.path.abspath(config.distill.teacher)
  step, directory = latest_variables(teacher)
  found = checksum(directory)
  pinned = config.distill.get("teacher_checksum")
  if pinned is not None and pinned != found:
    raise ConfigError(f"distill.teacher_checksum={pinned!r} does not match the teacher {teacher!r} (its checkpoint "
                      f"step {step} is {found}); the teacher changed: restore it or drop the checksum")
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path) and has_run(workdir):
    with open(path) as f:
      recorded = (json.load(f).get("distill") or {})
    if recorded.get("teacher") == teacher and recorded.get("teacher_checksum") not in (None, found):
      raise ConfigError(f"the teacher {teacher!r} changed since this run started in {workdir!r} (checkpoint "
                        f"{recorded['teacher_checksum']}, now step {step} with {found}); restore the teacher or use a "
                        "new workdir")
  config.distill.teacher_checksum = found
  return config


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The frozen teacher model and the loss's settings; its variables travel separately, as a jit argument."""
  model: Any
  resolution: int
  temperature: float
  weight: float

  def logits(self, variables, images):
    """The teacher's logits for the student's (augmented, [-1, 1]) images, in evaluation mode, without gradient."""
    if images.shape[1:3] != (self.resolution, self.resolution):
      images = jax.image.resize(images, (len(images), self.resolution, self.resolution, images.shape[-1]), "linear",
                                antialias=True)
    logits = self.model.apply(variables, images, train=False)
    return jax.lax.stop_gradient(logits.astype(jnp.float32))

  def loss(self, cross_entropy, logits, teacher_logits):
    """(loss, KL): `(1 - w) * cross_entropy + w * T^2 * KL(teacher_T || student_T)`, the KL a batch mean."""
    t = self.temperature
    teacher_log_p = jax.nn.log_softmax(teacher_logits / t)
    student_log_p = jax.nn.log_softmax(logits.astype(jnp.float32) / t)
    kl = jnp.mean(jnp.sum(jnp.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1))
    return (1.0 - self.weight) * cross_entropy + self.weight * t * t * kl, kl


def agreement(logits, teacher_logits):
  """Per example: 1.0 where the student's top-1 class is the teacher's."""
  return (jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1)).astype(jnp.float32)


def restore_teacher(config, num_classes, mesh):
  """(Teacher, variables replicated over mesh) of config.distill.teacher, or (None, None) without one. The
  checkpoint restored is the one whose checksum config.distill.teacher_checksum records."""
  if config.get("distill") is None or config.distill.teacher is None:
    return None, None
  teacher = config.distill.teacher
  teacher_config = load_config(teacher)
  teacher_config.model.kernels = config.model.kernels  # this process's kernel set, as the student's
  model = model_from_config(teacher_config, num_classes)
  dummy = jnp.zeros((1, MIN_RESOLUTION, MIN_RESOLUTION, 3), jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, train=False))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  step, directory = latest_variables(teacher)
  if checksum(directory) != config.distill.teacher_checksum:
    raise ConfigError(f"the teacher {teacher!r} changed while this run started; run the command again")
  checkpoints = checkpoint.manager(teacher, read_only=True)
  try:
    restored = checkpoint.restore_latest(checkpoints, {"variables": checkpoint.with_sharding(abstract, replicated)})
  finally:
    checkpoints.close()
  if restored is None or restored[0] != step:
    raise ConfigError(f"distill.teacher={teacher!r}: its checkpoint step {step} cannot be restored as its config's "
                      f"model (alpha {teacher_config.alpha}, {teacher_config.variant}) with {num_classes} classes")
  if jax.process_index() == 0:
    print(f"distilling from {teacher} (checkpoint step {step}, alpha {teacher_config.alpha}, resolution "
          f"{teacher_config.resolution})", flush=True)
  return (Teacher(model, teacher_config.resolution, float(config.distill.temperature), float(config.distill.weight)),
          restored[1]["variables"])
