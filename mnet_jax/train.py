"""Training and evaluation: `train_and_evaluate(config, workdir)`.

Data parallel over a Mesh of every device: the batch is split along the 'data' axis with NamedSharding
and the state is replicated, so one `jax.jit` step serves 1 CPU, 8 GPUs or many hosts, and BatchNorm's
batch statistics are computed over the global batch without any axis_name. The state is created with
`jax.eval_shape` + `jax.jit(out_shardings=...)` and donated to each step. Metrics are fetched one step
late so the device never waits for the host.
"""

import dataclasses
import json
import os
import threading
import queue
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mnet_jax import checkpoint, count, data as data_lib, metrics as metrics_lib, optim
from mnet_jax.errors import ConfigError
from mnet_jax.ops import cpu_kernels
from mnet_jax.models.mobilenet_v1 import MobileNetV1, check_choice, check_resolution, VARIANTS


class TrainingDiverged(RuntimeError):
  """The loss became NaN or infinite; the message names the step."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema: Any  # {"params", "batch_stats"} or None
  rng: jax.Array

  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


def model_from_config(config, num_classes):
  check_choice("variant", config.variant, VARIANTS)
  check_resolution(config.resolution)
  options = {k: v for k, v in config.model.to_dict().items() if v is not None}
  try:
    return MobileNetV1(alpha=config.alpha, num_classes=num_classes, variant=config.variant, **options)
  except TypeError as e:
    raise ConfigError(f"config.model has a field MobileNetV1 does not take: {e}") from None


def total_steps(config, steps_per_epoch):
  return optim.to_steps("num", config.num_epochs, config.get("num_steps"), steps_per_epoch)


def config_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def make_mesh():
  return Mesh(np.array(jax.devices()), ("data",))


def init_state(model, tx, config, mesh):
  """The replicated train state, built on the devices without a host copy."""
  replicated = NamedSharding(mesh, PartitionSpec())
  dummy = jnp.zeros((1, config.resolution, config.resolution, 3), jnp.float32)

  def init(rng):
    params_rng, dropout_rng = jax.random.split(rng)
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, dummy, train=False)
    ema = {"params": variables["params"], "batch_stats": variables["batch_stats"]} if config.optim.ema_decay else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]), ema=ema,
                      rng=dropout_rng)

  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(init, rng)
  shardings = jax.tree.map(lambda _: replicated, abstract)
  return jax.jit(init, out_shardings=shardings)(rng), checkpoint.with_sharding(abstract, replicated)


def initialize_from(state, abstract_state, source_workdir):
  """The state with its variables (and EMA) replaced by the latest variables of another workdir."""
  try:
    restored = checkpoint.restore_variables(source_workdir, abstract_state.variables())
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(f"init_from={source_workdir!r} cannot be restored into this model: {e}") from None
  if restored is None:
    raise ConfigError(f"init_from={source_workdir!r} holds no checkpoint readable as this model; allowed: a "
                      "workdir with checkpoints/ (a training run or `mnet_jax.convert --out`) of the same alpha, "
                      "variant and number of classes")
  step, variables = restored
  if jax.process_index() == 0:
    print(f"initialized from {source_workdir} (checkpoint step {step})", flush=True)
  ema = variables if state.ema is not None else None
  return state.replace(params=variables["params"], batch_stats=variables["batch_stats"], ema=ema)


def train_step(state, batch, *, model, tx, learning_rate, num_classes, label_smoothing, ema_decay):
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["images"], train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    loss = optim.cross_entropy(logits, batch["labels"], num_classes, label_smoothing).mean()
    return loss, (logits, updates["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema
  if ema is not None:
    ema = optim.ema_update(ema, {"params": params, "batch_stats": batch_stats}, ema_decay, state.step)
  metrics = {
      "loss": loss,
      "top1": jnp.mean(jnp.argmax(logits, -1) == batch["labels"]),
      "learning_rate": learning_rate(state.step),
      "l2_grads": optax.global_norm(grads),
      "l2_params": optax.global_norm(params),
      "l2_updates": optax.global_norm(updates),
  }
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema=ema)
  return new_state, metrics


def eval_step(variables, batch, *, model, num_classes):
  """Sums over the real (unmasked) examples: loss, top-1 and top-5 hits, count."""
  logits = model.apply(variables, batch["images"], train=False)
  labels, mask = batch["labels"], batch["mask"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  top_k = jax.lax.top_k(logits, min(5, num_classes))[1]
  return {
      "loss": jnp.sum(loss * mask),
      "top1": jnp.sum((top_k[:, 0] == labels) * mask),
      "top5": jnp.sum(jnp.any(top_k == labels[:, None], axis=-1) * mask),
      "count": jnp.sum(mask),
  }


def to_global(batch, sharding):
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def prefetch(batches, sharding, size=2):
  """Puts host batches on the devices from a background thread, `size` ahead."""
  slots = queue.Queue(maxsize=size)
  done = object()

  def fill():
    try:
      for batch in batches:
        slots.put(to_global(batch, sharding))
    except BaseException as e:  # surface pipeline errors in the training thread
      slots.put(e)
    slots.put(done)

  threading.Thread(target=fill, daemon=True).start()
  while (item := slots.get()) is not done:
    if isinstance(item, BaseException):
      raise item
    yield item


def evaluate(jitted_eval_step, variables, data, sharding):
  totals = None
  for batch in prefetch(data.eval_batches(), sharding):
    sums = jitted_eval_step(variables, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  n = float(totals["count"])
  result = {"top1": totals["top1"] / n, "loss": totals["loss"] / n, "num_examples": int(n)}
  if data.num_classes >= 5:
    result["top5"] = totals["top5"] / n
  return result


def evaluate_all(jitted_eval_step, state, data, sharding, split):
  """{"top1", ...} for the weights, plus {"ema_top1", ...} for the EMA weights when there are any."""
  result = evaluate(jitted_eval_step, state.variables(), data, sharding)
  if state.ema is not None:
    result.update({f"ema_{k}": v for k, v in evaluate(jitted_eval_step, state.ema, data, sharding).items()
                   if k != "num_examples"})
  return {"split": split, **result}


def model_facts(config, num_classes):
  model = model_from_config(config, num_classes)
  counts = count.count(config.alpha, config.resolution, config.variant, num_classes, model.min_depth, model.stem_stride)
  return {"mult_adds": counts["mult_adds"], "params": counts["params"],
          "trainable_params": counts["trainable_params"], "alpha": config.alpha, "resolution": config.resolution,
          "variant": config.variant}


def final_record(step, evaluation, facts, train_seconds, images_per_second):
  record = {"final": True, "step": step, "split": evaluation["split"]}
  record.update({f"test_{k}": v for k, v in evaluation.items() if k not in ("split", "num_examples")})
  record["num_examples"] = evaluation["num_examples"]
  record.update(facts)
  record.update(train_seconds=train_seconds, images_per_second=images_per_second)
  return record


def write_config(config, workdir):
  """Writes workdir/config.json, or checks that an existing one (a run to resume) holds the same config."""
  path = os.path.join(workdir, "config.json")
  text = config_json(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    new = json.loads(text)
    old.pop("wandb", None), new.pop("wandb", None)
    if old != new:
      changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
      raise ConfigError(f"workdir {workdir!r} holds a run with a different config (fields {', '.join(changed)} "
                        "differ); use a new workdir or the same config")
  if jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)
  return text


def use_persistent_compilation_cache():
  """Keeps compiled programs on disk, in $MNET_JAX_CACHE/xla (else ~/.cache/mnet_jax/xla) unless
  jax_compilation_cache_dir is set already: a resumed run, a sweep cell run again or another run of the same
  shapes skips XLA's compilation, most of a short run on CPU (a 2-step Fashion-MNIST cell: ~90 s -> ~20 s)."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cpu_kernels.cache_root() / "xla"))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from workdir's latest checkpoint if any), evaluates on the test split, returns the final
  metrics. A workdir whose run has finished returns its final metrics without training."""
  use_persistent_compilation_cache()
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  finished = metrics_lib.final_metrics(workdir)
  if finished is not None:
    return finished
  text = write_config(config, workdir)
  data = data_lib.build(config)
  model = model_from_config(config, data.num_classes)
  facts = model_facts(config, data.num_classes)
  num_steps = total_steps(config, data.steps_per_epoch)
  tx, learning_rate = optim.build(config.optim, config.batch_size, data.steps_per_epoch, num_steps)
  mesh = make_mesh()
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
  state, abstract_state = init_state(model, tx, config, mesh)

  checkpoints = checkpoint.manager(workdir)
  abstract_items = {"variables": abstract_state.variables(),
                    "train": {"step": abstract_state.step, "opt_state": abstract_state.opt_state,
                              "rng": abstract_state.rng}}
  if abstract_state.ema is not None:
    abstract_items["ema_variables"] = abstract_state.ema
  meta = {"wandb_run_id": metrics_lib.run_id(text, workdir), "train_seconds": 0.0}
  restored = checkpoint.restore_latest(checkpoints, abstract_items)
  if restored is not None:
    step, items, meta = restored
    variables, train = items["variables"], items["train"]
    state = TrainState(step=train["step"], params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state=train["opt_state"], ema=items.get("ema_variables"), rng=train["rng"])
    if jax.process_index() == 0:
      print(f"resuming from checkpoint step {step} in {checkpoints.directory}", flush=True)
    metrics_lib.truncate_after(workdir, step)
  elif config.get("init_from"):
    state = initialize_from(state, abstract_state, config.init_from)
  start_step = int(jax.device_get(state.step))
  data_position = meta.get("data_position", start_step)

  writer = metrics_lib.Writer(workdir, metrics_lib.start_wandb(config.wandb, config.to_dict(), workdir,
                                                               meta["wandb_run_id"]))
  step_fn = jax.jit(
      lambda s, b: train_step(s, data_lib.on_device(b, config.resolution), model=model, tx=tx,
                              learning_rate=learning_rate, num_classes=data.num_classes,
                              label_smoothing=config.optim.label_smoothing, ema_decay=config.optim.ema_decay),
      donate_argnums=0)
  jitted_eval_step = jax.jit(
      lambda v, b: eval_step(v, data_lib.on_device(b, config.resolution), model=model, num_classes=data.num_classes))
  eval_every = config.get("eval_every_steps")
  checkpoint_every = config.checkpoint_every_steps
  log_every = config.log_every_steps

  def save_checkpoint(step):
    items = {"variables": state.variables(),
             "train": {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}}
    if state.ema is not None:
      items["ema_variables"] = state.ema
    meta.update(step=step, data_position=step, train_seconds=train_seconds())
    if throughput_images:
      meta["images_per_second"] = throughput_images / (time.time() - throughput_start)
    checkpoint.save(checkpoints, step, items, meta)

  attempt_start = time.time()
  seconds_before = meta.get("train_seconds", 0.0)
  train_seconds = lambda: seconds_before + time.time() - attempt_start  # noqa: E731
  bar = metrics_lib.progress_bar(num_steps, start_step)
  throughput_start, throughput_images = None, 0
  interval_start, interval_images = time.time(), 0
  pending = None  # (step, device metrics) of the previous step, fetched one step late

  def handle(step, device_metrics):
    nonlocal interval_start, interval_images, throughput_start, throughput_images
    host = jax.device_get(device_metrics)
    if not np.isfinite(host["loss"]):
      raise TrainingDiverged(f"the training loss is {host['loss']} at step {step}; stopping (lower the learning rate "
                             "or check the data)")
    now = time.time()
    if throughput_start is None:  # the first step of an attempt includes compilation: not counted
      throughput_start, interval_start, interval_images = now, now, 0
    else:
      throughput_images += config.batch_size
      interval_images += config.batch_size
    if bar is not None:
      bar.update(1)
      bar.set_postfix(loss=f"{host['loss']:.4f}", img_s=f"{interval_images / max(now - interval_start, 1e-9):.0f}")
    if step % log_every == 0 or step == num_steps:
      rate = interval_images / (now - interval_start) if interval_images else None
      writer.write({"step": step, **host, "images_per_second": rate, "epoch": step / data.steps_per_epoch})
      interval_start, interval_images = now, 0

  try:
    step = start_step
    batches = prefetch(data.train_batches(data_position), batch_sharding)
    while step < num_steps:
      state, device_metrics = step_fn(state, next(batches))
      step += 1
      if pending is not None:
        handle(*pending)
      pending = (step, device_metrics)
      if step % checkpoint_every == 0 or step == num_steps or (eval_every and step % eval_every == 0):
        handle(*pending)
        pending = None
        pause_start = time.time()
        if eval_every and step % eval_every == 0 and step < num_steps:
          writer.write({"step": step, **evaluate_all(jitted_eval_step, state, data, batch_sharding,
                                                      config.data.eval_split)})
        if step % checkpoint_every == 0 or step == num_steps:
          save_checkpoint(step)
        paused = time.time() - pause_start  # evaluation and checkpoints do not count against images/s
        interval_start += paused
        if throughput_start is not None:
          throughput_start += paused
    if pending is not None:
      handle(*pending)
    if bar is not None:
      bar.close()
    seconds = train_seconds() if start_step < num_steps else meta.get("train_seconds", 0.0)
    if start_step == num_steps == 0:
      save_checkpoint(0)
    rate = meta.get("images_per_second")
    evaluation = evaluate_all(jitted_eval_step, state, data, batch_sharding, config.data.eval_split)
    final = final_record(num_steps, evaluation, facts, seconds, rate)
    writer.write(final)
    return metrics_lib.final_metrics(workdir) or final
  finally:
    writer.close()
    checkpoints.close()
