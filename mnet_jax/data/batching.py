"""Batch order and shape, shared by every source.

Each process feeds its own rows of every global batch. The training order is a pure function of (seed, epoch,
position in the epoch), so the step saved in a checkpoint is all a resumed run needs to see exactly the batches it
would have seen. Evaluation covers the whole split: the last batch is padded and the padding masked, and every
process yields the same number of batches.
"""

import dataclasses
from typing import Callable, Iterator

import jax
import numpy as np

from mnet_jax.errors import ConfigError


@dataclasses.dataclass
class Data:
  """A dataset ready for training: batches are dicts of numpy arrays holding this process's examples.

  train_batches(step) yields {'images', 'labels'} from global step `step` on, forever (epoch after epoch).
  eval_batches() yields {'images', 'labels', 'mask'}; every process yields the same number of batches.
  """

  name: str
  num_classes: int
  num_train: int
  num_eval: int
  steps_per_epoch: int
  train_batches: Callable[[int], Iterator[dict]]
  eval_batches: Callable[[], Iterator[dict]]


def epoch_rng(seed, epoch, *more):
  return np.random.default_rng([seed, epoch, *more])


def process_slice(global_batch_size):
  """The rows of a global batch that this process feeds."""
  local = global_batch_size // jax.process_count()
  start = jax.process_index() * local
  return slice(start, start + local)


def check_batch_size(batch_size):
  devices = jax.device_count()
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ConfigError(f"batch_size={batch_size!r} is not allowed: it must be an integer >= 1")
  if batch_size % devices:
    raise ConfigError(
        f"batch_size={batch_size} is not divisible by the number of devices ({devices}); "
        f"use a multiple of {devices}")


def epoch_steps(num_train, batch_size, eval_only):
  """Whole batches in an epoch of num_train examples; a training set smaller than a batch is refused."""
  if num_train < batch_size and not eval_only:
    raise ConfigError(f"batch_size={batch_size} is larger than the training set ({num_train} examples)")
  return num_train // batch_size


def limit(arrays, max_examples):
  return arrays if max_examples is None else tuple(a[:max_examples] for a in arrays)


def eval_batch_count(num_examples, batch_size):
  """Batches each process runs so that its largest share of the split fits (the same on every process)."""
  largest_share = -(-num_examples // jax.process_count())
  return -(-largest_share // (batch_size // jax.process_count()))


def pad_batch(batch, size):
  """Pads a batch to `size` rows and adds 'mask' (1 for real examples, 0 for padding)."""
  count = len(batch["labels"])
  padded = {k: np.concatenate([v, np.zeros((size - count, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
  padded["mask"] = (np.arange(size) < count).astype(np.float32)
  return padded


def gather(images, indices):
  """Rows of an array (in memory or memory-mapped), read in file order."""
  order = np.argsort(indices)
  out = np.empty((len(indices), *images.shape[1:]), images.dtype)
  out[order] = images[indices[order]]
  return out


# Sources that hold their examples as arrays (Fashion-MNIST in memory, the uint8 store) -------------------------


def array_train_batches(num_examples, batch_size, seed, step, make_batch):
  """Training batches from global step `step` on, forever: each epoch a new order of the num_examples rows, and
  for each whole batch make_batch(indices, rng, rows), where indices are this process's rows of the batch in that
  order, rows its slice of the global batch and rng (a pure function of seed, epoch and position) draws the
  batch's augmentation over the whole global batch."""
  steps_per_epoch = num_examples // batch_size
  rows = process_slice(batch_size)
  while True:
    epoch, position = divmod(step, steps_per_epoch)
    order = epoch_rng(seed, epoch).permutation(num_examples)
    for position in range(position, steps_per_epoch):
      indices = order[position * batch_size:(position + 1) * batch_size][rows]
      yield make_batch(indices, epoch_rng(seed, epoch, position), rows)
      step += 1


def array_eval_batches(images, labels, batch_size):
  """The whole split in padded batches: process p takes examples p, p + P, p + 2P, ... so every process gets the
  same number of batches."""
  local_batch = batch_size // jax.process_count()
  mine = np.arange(jax.process_index(), len(images), jax.process_count())
  for b in range(eval_batch_count(len(images), batch_size)):
    indices = mine[b * local_batch:(b + 1) * local_batch]
    yield pad_batch({"images": gather(images, indices), "labels": labels[indices]}, local_batch)
