"""The prepared copy that `python -m mnet_jax.prepare` writes: its manifest, checked against the config, and its
re-encoded JPEG shards read as records (the uint8 store's arrays are read by uint8_store.py)."""

import json
import os

import jax
import numpy as np

from mnet_jax.data.records import Records, pipeline_options
from mnet_jax.errors import ConfigError

MANIFEST = "manifest.json"  # written last: a directory without it is not finished
INTERLEAVED_FILES = 16  # shards read at once


def read_json(path):
  """The JSON value in `path`, or None when the file is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def check_prepared(config, mode):
  """The manifest of config.data.prepared_dir, checked against the config; one line when it does not fit."""
  directory = config.data.prepared_dir
  command = f"`python -m mnet_jax.prepare --config ... --out {directory}`"
  if not os.path.isdir(directory):
    raise ConfigError(f"data.prepared_dir={directory!r} is not a directory; write it with {command}")
  manifest = read_json(os.path.join(directory, MANIFEST))
  if manifest is None:
    raise ConfigError(f"data.prepared_dir={directory!r} holds no {MANIFEST} (not prepared, or not finished); "
                      f"finish it with {command}")
  if manifest["source"] != config.data.name:
    raise ConfigError(f"data.prepared_dir={directory!r} holds a copy of {manifest['source']!r}, not of "
                      f"data.name={config.data.name!r}")
  if mode not in manifest["formats"]:
    raise ConfigError(f"data.prepared_dir={directory!r} holds {', '.join(manifest['formats'])}, not "
                      f"data.input_mode={mode!r}; prepare it with --formats {mode}")
  for split in (config.data.train_split, config.data.eval_split):
    if split not in manifest["splits"]:
      raise ConfigError(f"data.prepared_dir={directory!r} has no split {split!r}; it has "
                        f"{', '.join(manifest['splits'])}")
  if manifest["size"] < config.resolution:
    raise ConfigError(f"data.prepared_dir={directory!r} stores {manifest['size']} px (shorter side), less than "
                      f"resolution={config.resolution}; prepare a copy with --size >= {config.resolution}")
  return manifest


def prepared_records(config):
  """The re-encoded JPEG shards of data.prepared_dir, read like tfds records."""
  import tensorflow as tf
  manifest = check_prepared(config, "prepared_jpeg")
  directory = config.data.prepared_dir
  features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

  def read(split, num_examples, shuffle_seed=None):
    files = [os.path.join(directory, name) for name in manifest["splits"][split]["prepared_jpeg"]["files"]]
    # The files' order is shuffled only when the whole split is read: a first-N subset stays the same N.
    if shuffle_seed is not None and num_examples == manifest["splits"][split]["count"]:
      files = [files[i] for i in np.random.default_rng(shuffle_seed).permutation(len(files))]
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(INTERLEAVED_FILES, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    # Process p takes records p, p + P, ...; training drops the remainder so every process has the same count.
    share = num_examples // jax.process_count() if shuffle_seed is not None else None
    ds = ds.take(num_examples).shard(jax.process_count(), jax.process_index())
    if share is not None:
      ds = ds.take(share)
    parse = lambda record: tf.io.parse_single_example(record, features)  # noqa: E731
    return ds.map(parse).map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32))).with_options(
        pipeline_options())

  return Records(manifest["source"], manifest["num_classes"], manifest["splits"][config.data.train_split]["count"],
                 manifest["splits"][config.data.eval_split]["count"], read)
