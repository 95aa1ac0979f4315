"""Training and evaluation: `train_and_evaluate(config, workdir)`.

Data parallel over a Mesh of every device: the batch is split along the 'data' axis with NamedSharding
and the state is replicated, so one `jax.jit` step serves 1 CPU, 8 GPUs or many hosts, and BatchNorm's
batch statistics are computed over the global batch without any axis_name. The state is created with
`jax.eval_shape` + `jax.jit(out_shardings=...)` and donated to each step. Metrics are fetched one step
late so the device never waits for the host.

For tests only: with MNET_JAX_TEST_KILL_AFTER_CHECKPOINT=N in the environment, every process SIGKILLs itself
once checkpoint N is committed (after a barrier, so all of them die there), which puts a kill at a chosen
point without a test polling the workdir.
"""

import contextlib
import os
import threading
import queue
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mnet_jax import checkpoint, data as data_lib, distill, metrics as metrics_lib, optim
from mnet_jax.errors import ConfigError
from mnet_jax.models.mobilenet_v1 import MIN_RESOLUTION, check_positive_int
from mnet_jax.workdir import final_record, model_facts, model_from_config, with_resolved_kernels, write_config


KILL_AFTER_CHECKPOINT = "MNET_JAX_TEST_KILL_AFTER_CHECKPOINT"  # tests only (module docstring)


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


def total_steps(config, steps_per_epoch):
  return optim.to_steps("num", config.num_epochs, config.get("num_steps"), steps_per_epoch)


def check_config(config):
  """Checks every field that can be checked without the data, so that a refused run writes nothing."""
  model = model_from_config(config, num_classes=1)
  image = jax.ShapeDtypeStruct((1, config.resolution, config.resolution, 3), jnp.float32)
  jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), image)
  data_lib.check_batch_size(config.batch_size)
  data_lib.input_mode(config.data)
  optim.build(config.optim, config.batch_size, steps_per_epoch=1, total_steps=total_steps(config, 1))
  for name in ("log_every_steps", "checkpoint_every_steps"):
    check_positive_int(name, config[name])
  if config.get("eval_every_steps"):  # None or 0: evaluate at the end only
    check_positive_int("eval_every_steps", config.eval_every_steps)
  metrics_lib.check_wandb_mode(config.wandb.mode)
  distill.check_config(config)


class Chrono:
  """The training clock of one attempt: wall time since the run started (with the earlier attempts'), and
  images/s that leave out the first step (compilation) and the pauses for evaluation and checkpoints."""

  def __init__(self, seconds_before=0.0):
    self.now = self.attempt_start = time.time()
    self.seconds_before = seconds_before
    self.start, self.images = None, 0  # since the first counted step
    self.interval_start, self.interval_images = self.now, 0  # since the last log line

  def tick(self, images):
    """A step has finished; the first of an attempt includes compilation and is not counted."""
    self.now = time.time()
    if self.start is None:
      self.start, self.interval_start, self.interval_images = self.now, self.now, 0
    else:
      self.images += images
      self.interval_images += images

  def interval_rate(self):
    """Images/s since the last `new_interval()`, or None before any counted step."""
    return self.interval_images / max(self.now - self.interval_start, 1e-9) if self.interval_images else None

  def new_interval(self):
    self.interval_start, self.interval_images = self.now, 0

  def rate(self):
    """Images/s of the counted steps of this attempt, or None before any."""
    return self.images / (time.time() - self.start) if self.images else None

  def train_seconds(self):
    return self.seconds_before + time.time() - self.attempt_start

  @contextlib.contextmanager
  def paused(self):
    """Time in this block does not count against images/s."""
    pause_start = time.time()
    try:
      yield
    finally:
      paused = time.time() - pause_start
      self.interval_start += paused
      if self.start is not None:
        self.start += paused


def make_mesh():
  return Mesh(np.array(jax.devices()), ("data",))


def init_state(model, tx, config, mesh):
  """The replicated train state, built on the devices without a host copy. Every resolution initialises from the
  same smallest input (the parameters do not depend on its size): one compiled init per model, not per cell."""
  replicated = NamedSharding(mesh, PartitionSpec())
  dummy = jnp.zeros((1, MIN_RESOLUTION, MIN_RESOLUTION, 3), jnp.float32)

  def init(rng):
    params_rng, dropout_rng = jax.random.split(rng)
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, dummy, train=False)
    ema = {"params": variables["params"], "batch_stats": variables["batch_stats"]} if config.optim.ema_decay else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]), ema=ema,
                      rng=dropout_rng)

  rng = jax.random.PRNGKey(config.seed)
  traced = jax.jit(init, out_shardings=replicated).trace(rng)  # one trace: the state's shapes and its program
  return traced.lower().compile()(rng), traced.out_info


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


NORMS = ("l2_grads", "l2_params", "l2_updates")


def train_step(state, batch, *, model, tx, learning_rate, num_classes, label_smoothing, ema_decay, teacher=None,
               teacher_variables=None, norms=True):
  """One optimizer step: (new state, metrics). `norms` (a traced bool: no recompilation either way) says whether the
  three global norms of NORMS are computed; NaN where not. The trainer asks for them on the steps it logs alone
  (their cost on a CPU: docs/training.md, the metrics.jsonl lines)."""
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  # The teacher (mnet_jax/distill.py) sees the same augmented batch, frozen.
  teacher_logits = None if teacher is None else teacher.logits(teacher_variables, batch["images"])

  def loss_fn(params):
    logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["images"], train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    loss = optim.cross_entropy(logits, batch["labels"], num_classes, label_smoothing).mean()
    extra = {}
    if teacher is not None:
      loss, extra["distill_kl"] = teacher.loss(loss, logits, teacher_logits)
    return loss, (logits, updates["batch_stats"], extra)

  (loss, (logits, batch_stats, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema
  if ema is not None:
    ema = optim.ema_update(ema, {"params": params, "batch_stats": batch_stats}, ema_decay, state.step)
  metrics = {
      "loss": loss,
      "top1": jnp.mean(jnp.argmax(logits, -1) == batch["labels"]),
      "learning_rate": learning_rate(state.step),
      **jax.lax.cond(norms, lambda trees: dict(zip(NORMS, map(optax.global_norm, trees))),
                     lambda trees: dict.fromkeys(NORMS, jnp.float32(jnp.nan)), (grads, params, updates)),
      **extra,
  }
  if teacher is not None:
    metrics["teacher_agreement"] = jnp.mean(distill.agreement(logits, teacher_logits))
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema=ema)
  return new_state, metrics


def eval_step(variables, batch, *, model, num_classes, teacher=None, teacher_variables=None):
  """Sums over the real (unmasked) examples: loss, top-1 and top-5 hits, count, and with a teacher the examples
  whose top-1 class is the teacher's."""
  logits = model.apply(variables, batch["images"], train=False)
  labels, mask = batch["labels"], batch["mask"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  top_k = jax.lax.top_k(logits, min(5, num_classes))[1]
  sums = {
      "loss": jnp.sum(loss * mask),
      "top1": jnp.sum((top_k[:, 0] == labels) * mask),
      "top5": jnp.sum(jnp.any(top_k == labels[:, None], axis=-1) * mask),
      "count": jnp.sum(mask),
  }
  if teacher is not None:
    sums["teacher_agreement"] = jnp.sum(distill.agreement(logits, teacher.logits(teacher_variables, batch["images"]))
                                        * mask)
  return sums


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
  if "teacher_agreement" in totals:
    result["teacher_agreement"] = totals["teacher_agreement"] / n
  return result


def evaluate_all(jitted_eval_step, state, data, sharding, split):
  """{"top1", ...} for the weights, plus {"ema_top1", ...} for the EMA weights when there are any."""
  result = evaluate(jitted_eval_step, state.variables(), data, sharding)
  if state.ema is not None:
    result.update({f"ema_{k}": v for k, v in evaluate(jitted_eval_step, state.ema, data, sharding).items()
                   if k != "num_examples"})
  return {"split": split, **result}


def wait_for_every_process(name, minutes=30):
  """Blocks until every process gets here, through jax.distributed's coordination service. The first collective
  between processes sets up gloo (on CPU) with a 30 s rendezvous, which processes that arrive further apart (one
  still importing or reading data on a busy host) fail."""
  if jax.process_count() > 1:
    from jax._src import distributed  # the client orbax's own barriers use
    distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=minutes * 60 * 1000)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from workdir's latest checkpoint if any), evaluates on the test split, returns the final
  metrics. A workdir whose run has finished returns its final metrics without training."""
  workdir = os.path.abspath(workdir)
  finished = metrics_lib.final_metrics(workdir)
  if finished is not None:
    return finished
  check_config(config)
  config = distill.with_teacher_checksum(with_resolved_kernels(config), workdir)
  os.makedirs(workdir, exist_ok=True)
  text = write_config(config, workdir)
  data = data_lib.build(config)
  model = model_from_config(config, data.num_classes)
  facts = model_facts(config, data.num_classes)
  num_steps = total_steps(config, data.steps_per_epoch)
  tx, learning_rate = optim.build(config.optim, config.batch_size, data.steps_per_epoch, num_steps)
  mesh = make_mesh()
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
  state, abstract_state = init_state(model, tx, config, mesh)
  teacher, teacher_variables = distill.restore_teacher(config, data.num_classes, mesh)

  wait_for_every_process("mnet_jax_train_start")
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
      lambda s, b, t, n: train_step(s, data_lib.on_device(b, config.resolution), model=model, tx=tx,
                                    learning_rate=learning_rate, num_classes=data.num_classes,
                                    label_smoothing=config.optim.label_smoothing, ema_decay=config.optim.ema_decay,
                                    teacher=teacher, teacher_variables=t, norms=n),
      donate_argnums=0)
  eval_with_teacher = jax.jit(
      lambda v, b, t: eval_step(v, data_lib.on_device(b, config.resolution), model=model, num_classes=data.num_classes,
                                teacher=teacher, teacher_variables=t))
  jitted_eval_step = lambda v, b: eval_with_teacher(v, b, teacher_variables)  # noqa: E731
  eval_every = config.get("eval_every_steps")
  checkpoint_every = config.checkpoint_every_steps
  log_every = config.log_every_steps

  def save_checkpoint(step):
    items = {"variables": state.variables(),
             "train": {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}}
    if state.ema is not None:
      items["ema_variables"] = state.ema
    meta.update(step=step, data_position=step, train_seconds=chrono.train_seconds())
    rate = chrono.rate()
    if rate is not None:
      meta["images_per_second"] = rate
    checkpoint.save(checkpoints, step, items, meta)
    if os.environ.get(KILL_AFTER_CHECKPOINT) == str(step):
      wait_for_every_process(f"mnet_jax_kill_{step}")  # every process has committed its part
      os.kill(os.getpid(), signal.SIGKILL)

  chrono = Chrono(meta.get("train_seconds", 0.0))
  bar = metrics_lib.progress_bar(num_steps, start_step)
  pending = None  # (step, device metrics) of the previous step, fetched one step late

  def logged(step):
    return step % log_every == 0 or step == num_steps

  def handle(step, device_metrics):
    host = jax.device_get(device_metrics)
    if not np.isfinite(host["loss"]):
      raise TrainingDiverged(f"the training loss is {host['loss']} at step {step}; stopping (lower the learning rate "
                             "or check the data)")
    chrono.tick(config.batch_size)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(loss=f"{host['loss']:.4f}", img_s=f"{chrono.interval_rate() or 0:.0f}")
    if logged(step):
      writer.write({"step": step, **host, "images_per_second": chrono.interval_rate(),
                    "epoch": step / data.steps_per_epoch})
      chrono.new_interval()

  try:
    step = start_step
    batches = prefetch(data.train_batches(data_position), batch_sharding)
    while step < num_steps:
      state, device_metrics = step_fn(state, next(batches), teacher_variables, logged(step + 1))
      step += 1
      if pending is not None:
        handle(*pending)
      pending = (step, device_metrics)
      if step % checkpoint_every == 0 or step == num_steps or (eval_every and step % eval_every == 0):
        handle(*pending)
        pending = None
        with chrono.paused():
          if eval_every and step % eval_every == 0 and step < num_steps:
            writer.write({"step": step, **evaluate_all(jitted_eval_step, state, data, batch_sharding,
                                                        config.data.eval_split)})
          if step % checkpoint_every == 0 or step == num_steps:
            save_checkpoint(step)
    if pending is not None:
      handle(*pending)
    if bar is not None:
      bar.close()
    seconds = chrono.train_seconds() if start_step < num_steps else meta.get("train_seconds", 0.0)
    if start_step == num_steps == 0:
      save_checkpoint(0)
    rate = meta.get("images_per_second")
    evaluation = evaluate_all(jitted_eval_step, state, data, batch_sharding, config.data.eval_split)
    final = final_record(num_steps, evaluation, facts, seconds, rate, model.kernels, jax.device_count(),
                         jax.process_count())
    writer.write(final)
    return metrics_lib.final_metrics(workdir) or final
  finally:
    writer.close()
    checkpoints.close()
