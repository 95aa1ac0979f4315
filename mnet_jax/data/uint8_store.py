"""The uint8 store of a prepared copy: one (N, S, S, 3) array per split, read by memory map. The host gathers rows
and draws each example's box and flip (numpy, a pure function of seed, epoch and position); the device crops."""

import os

import numpy as np

from mnet_jax.data.batching import Data, array_eval_batches, array_train_batches, epoch_steps, gather, limit
from mnet_jax.data.boxes import FLIP_PROBABILITY, central_boxes, sample_boxes
from mnet_jax.data.prepared import check_prepared


def uint8_store_data(config, eval_only):
  """Data over the uint8 store of data.prepared_dir; `device.on_device` crops its batches."""
  manifest = check_prepared(config, "uint8_store")
  data_config, directory = config.data, config.data.prepared_dir
  arrays = {}
  for split in (data_config.train_split, data_config.eval_split):
    names = manifest["splits"][split]["uint8_store"]
    arrays[split] = (np.load(os.path.join(directory, names["images"]), mmap_mode="r"),
                     np.load(os.path.join(directory, names["labels"])))
  train_images, train_labels = limit(arrays[data_config.train_split], data_config.max_train_examples)
  eval_images, eval_labels = limit(arrays[data_config.eval_split], data_config.max_eval_examples)
  size = manifest["size"]
  batch_size, seed = config.batch_size, config.seed
  steps_per_epoch = epoch_steps(len(train_images), batch_size, eval_only)

  def train_batches(step):
    return store_train_batches(train_images, train_labels, batch_size, seed, data_config.min_area, data_config.flip,
                               step)

  def eval_batches():
    for batch in array_eval_batches(eval_images, eval_labels, batch_size):
      local_batch = len(batch["labels"])
      batch.update(boxes=central_boxes(local_batch, size, data_config.eval_crop_fraction),
                   flips=np.zeros(local_batch, bool))
      yield batch

  return Data(manifest["source"], manifest["num_classes"], len(train_images), len(eval_images), steps_per_epoch,
              train_batches, eval_batches)


def store_train_batches(images, labels, batch_size, seed, min_area, flip, step):
  """Training batches of a uint8 store from global step `step` on: rows in a per-epoch order, with the boxes and
  flips that `on_device` applies."""
  size = images.shape[1]

  def make_batch(indices, rng, rows):
    boxes = sample_boxes(rng, batch_size, size, size, min_area)[rows]
    flips = (rng.random(batch_size) < FLIP_PROBABILITY)[rows] & flip
    return {"images": gather(images, indices), "labels": labels[indices], "boxes": boxes, "flips": flips}

  return array_train_batches(len(images), batch_size, seed, step, make_batch)
