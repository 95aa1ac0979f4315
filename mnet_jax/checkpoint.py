"""Orbax checkpoints of a workdir: `workdir/checkpoints/<step>/` with up to four items.

- `variables`: `{"params": ..., "batch_stats": ...}` exactly as `MobileNetV1(...).init` returns them.
- `ema_variables`: the same for the EMA weights (only when the recipe keeps an EMA).
- `train`: `{"step", "opt_state", "rng"}`, what a resumed run needs besides the variables.
- `meta`: JSON: step, data position (the global step the input pipeline resumes at), wandb run id,
  training wall time so far.

Orbax writes each step to a temporary directory and renames it when complete, so a killed save leaves no
half-written step behind. A step that is nevertheless unreadable (disk trouble, a truncated copy) is
skipped with a warning and the previous one restored.
"""

import logging
import os
import shutil
import warnings

import jax
import orbax.checkpoint as ocp

MAX_TO_KEEP = 3


def directory(workdir):
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def manager(workdir, read_only=False):
  if not read_only and jax.process_index() == 0:
    remove_unfinished_saves(directory(workdir))
  options = ocp.CheckpointManagerOptions(
      max_to_keep=MAX_TO_KEEP, create=not read_only, read_only=read_only, enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory(workdir), options=options)


def remove_unfinished_saves(path):
  """Deletes the temporary directories of saves that a killed run left (orbax never lists them as steps).

  Done here, synchronously, rather than by orbax's background clean-up thread."""
  if os.path.isdir(path):
    for name in os.listdir(path):
      if name.endswith(".orbax-checkpoint-tmp") or ".orbax-checkpoint-tmp-" in name:
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def save(checkpoints, step, items, meta):
  """Saves pytrees `items` (name -> pytree) and the JSON-able dict `meta` as checkpoint `step`."""
  args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
  checkpoints.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args), force=True)
  checkpoints.wait_until_finished()


def restore_latest(checkpoints, abstract_items):
  """(step, items, meta) of the newest readable checkpoint, restoring only `abstract_items` (name -> tree of
  jax.ShapeDtypeStruct, with shardings); None when there is none. Unreadable steps are skipped with a warning."""
  for step in sorted(checkpoints.all_steps(), reverse=True):
    try:
      args = {name: ocp.args.StandardRestore(tree) for name, tree in abstract_items.items()}
      restored = checkpoints.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore(), **args))
    except Exception as e:  # orbax/tensorstore raise many kinds for a damaged step
      message = f"checkpoint step {step} in {checkpoints.directory} is unreadable ({type(e).__name__}: " \
                f"{str(e).splitlines()[0] if str(e) else ''}); trying the previous one"
      warnings.warn(message)
      logging.warning(message)
      continue
    return step, {name: restored[name] for name in abstract_items}, dict(restored["meta"])
  return None


def save_variables(workdir, variables, step=0, ema_variables=None, meta=None):
  """Writes a checkpoint holding model variables only (e.g. converted pretrained weights)."""
  checkpoints = manager(workdir)
  items = {"variables": variables}
  if ema_variables is not None:
    items["ema_variables"] = ema_variables
  save(checkpoints, step, items, {"step": step, **(meta or {})})
  checkpoints.close()


def restore_variables(workdir, abstract_variables, ema=False):
  """(step, variables) of the newest readable checkpoint of workdir (its EMA weights if `ema`), or None.

  `abstract_variables` is the tree of jax.ShapeDtypeStruct (e.g. from jax.eval_shape(model.init, ...)).
  """
  checkpoints = manager(workdir, read_only=True)
  name = "ema_variables" if ema else "variables"
  restored = restore_latest(checkpoints, {name: abstract_variables})
  checkpoints.close()
  if restored is None:
    return None
  step, items, _ = restored
  return step, items[name]


def with_sharding(abstract_tree, sharding):
  """The tree of ShapeDtypeStructs with every leaf placed by `sharding`."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract_tree)
