"""Batches from records of encoded images (tfds's own, or the prepared JPEG copy): a tf.data pipeline whose training
crops decode only their window and whose batches cross to the devices as uint8."""

import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from mnet_jax.data.batching import Data, epoch_rng, epoch_steps, eval_batch_count, pad_batch
from mnet_jax.data.jpeg_ops import central_crop, jpeg_crop


@dataclasses.dataclass
class Records:
  """Where a JPEG pipeline reads: read(split, num_examples, shuffle_seed) -> this process's dataset of
  (image bytes, int32 label), files shuffled when shuffle_seed is set."""
  name: str
  num_classes: int
  num_train: int
  num_eval: int
  read: Callable


def pipeline_options():
  """tf.data options for throughput with a deterministic order: a private thread pool of one thread per core,
  each op single-threaded inside (parallelism comes from the parallel map), autotuned buffers."""
  import tensorflow as tf
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = os.cpu_count()
  options.threading.max_intra_op_parallelism = 1
  options.autotune.enabled = True
  return options


def jpeg_data(config, eval_only, records):
  """Data over JPEG records: training crops decode only their window; batches cross to the devices as uint8."""
  import tensorflow as tf
  import tensorflow_datasets as tfds
  data_config = config.data
  num_train, num_eval = records.num_train, records.num_eval
  if data_config.max_train_examples is not None:
    num_train = min(num_train, data_config.max_train_examples)
  if data_config.max_eval_examples is not None:
    num_eval = min(num_eval, data_config.max_eval_examples)
  batch_size, resolution, seed = config.batch_size, config.resolution, config.seed
  local_batch = batch_size // jax.process_count()
  steps_per_epoch = epoch_steps(num_train, batch_size, eval_only)
  options = pipeline_options()

  def epoch_dataset(epoch, position):
    epoch_seed = int(epoch_rng(seed, epoch).integers(2**31))
    ds = records.read(data_config.train_split, num_train, shuffle_seed=epoch_seed)
    ds = ds.shuffle(data_config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.take(steps_per_epoch * local_batch).enumerate().skip(position * local_batch)

    def preprocess(index, example):
      image_bytes, label = example
      example_seed = tf.stack([tf.constant(epoch_seed, tf.int64), index * jax.process_count() + jax.process_index()])
      image = jpeg_crop(image_bytes, example_seed, resolution, data_config.min_area, data_config.flip)
      return {"images": image, "labels": label}

    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)

  def train_batches(step):
    epoch, position = divmod(step, steps_per_epoch)
    while True:
      yield from tfds.as_numpy(epoch_dataset(epoch, position))
      epoch, position = epoch + 1, 0

  def eval_batches():
    ds = records.read(data_config.eval_split, num_eval)
    ds = ds.map(lambda image_bytes, label: {
        "images": central_crop(image_bytes, resolution, data_config.eval_crop_fraction), "labels": label},
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch).prefetch(tf.data.AUTOTUNE).with_options(options)
    # Processes' shares differ by at most one example: every process yields as many batches as the largest
    # share needs, padding with fully masked batches.
    num_batches = eval_batch_count(num_eval, batch_size)
    count = 0
    for batch in tfds.as_numpy(ds):
      count += 1
      yield pad_batch(batch, local_batch)
    empty = {"images": np.zeros((0, resolution, resolution, 3), np.uint8), "labels": np.zeros((0,), np.int32)}
    for _ in range(count, num_batches):
      yield pad_batch(empty, local_batch)

  return Data(records.name, records.num_classes, num_train, num_eval, steps_per_epoch, train_batches, eval_batches)
