"""This project's side of the benchmark: the trainer's jitted training step and the inference forward of a model.

The step is `train.train_step` jitted as `train.train_and_evaluate` jits it (`data.on_device` first, the
`TrainState` of `train.init_state` donated), a step between log lines (no global norms), with the bench's own
optimizer: SGD with momentum at a constant learning rate, no label smoothing, no EMA, the PyTorch peer's update
(docs/benchmarks.md says what else differs from a training run).
"""

import functools

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mnet_jax import data as data_lib, train

LEARNING_RATE, MOMENTUM = 0.01, 0.9


def random_batch(resolution, batch, num_classes, seed=0):
  """Images uniform in [-1, 1] (NHWC float32, as `data.on_device` hands them to the model) and random labels."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(-1, 1, (batch, resolution, resolution, 3)).astype(np.float32)
  return {"images": images, "labels": rng.integers(0, num_classes, batch).astype(np.int32)}


def jitted_step(model, resolution, tx):
  """`train.train_step` for `model` (bench.model.Model) and optimizer `tx`, jitted as the trainer jits it."""
  return jax.jit(lambda s, b: train.train_step(s, data_lib.on_device(b, resolution), model=model.module, tx=tx,
                                               learning_rate=optax.constant_schedule(LEARNING_RATE),
                                               num_classes=model.num_classes, label_smoothing=0.0, ema_decay=0.0,
                                               norms=False),
                 donate_argnums=0)


def initial_state(model, tx, device):
  """The trainer's TrainState for `model` on a mesh of `device` alone, and that mesh."""
  mesh = Mesh(np.array([device]), ("data",))
  config = ml_collections.ConfigDict({"seed": 0, "optim": {"ema_decay": 0.0}})  # the fields init_state reads
  return train.init_state(model.module, tx, config, mesh)[0], mesh


def jax_runs(model, resolution, batch, device):
  """(train, infer): one training step and one inference forward of `model` (bench.model.Model) on `device`, each
  a function that blocks until done; both compiled and run once."""
  tx = optax.sgd(LEARNING_RATE, MOMENTUM)
  state, mesh = initial_state(model, tx, device)
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
  inputs = jax.device_put(random_batch(resolution, batch, model.num_classes), batch_sharding)
  step = jitted_step(model, resolution, tx)
  forward = jax.jit(functools.partial(model.module.apply, train=False))

  def train_run():
    nonlocal state
    state, metrics = step(state, inputs)
    metrics["loss"].block_until_ready()

  def infer_run():
    forward(state.variables(), inputs["images"]).block_until_ready()

  for run in (train_run, infer_run):  # compile, then one call each
    run()
    run()
  return train_run, infer_run
