"""Fashion-MNIST from the IDX files of Debian's dataset-fashion-mnist, held in memory: shuffled per epoch, flipped
on the host, crossing to the devices as 28 x 28 uint8 images that `device.on_device` resizes."""

import gzip
import os

import numpy as np

from mnet_jax.data.batching import Data, array_eval_batches, array_train_batches, epoch_steps, gather, limit
from mnet_jax.data.boxes import FLIP_PROBABILITY
from mnet_jax.errors import ConfigError

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = 10
FASHION_MNIST_SHAPE = (28, 28, 1)
IDX_IMAGES_MAGIC, IDX_IMAGES_HEADER_BYTES = 2051, 16  # magic, count, rows, columns (big-endian int32)
IDX_LABELS_MAGIC, IDX_LABELS_HEADER_BYTES = 2049, 8  # magic, count
INSTALL = "`apt-get install dataset-fashion-mnist`"


def read_idx(path, magic, header_bytes, shape_tail):
  """The uint8 array of a gzipped IDX file, checked against its header."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  header = np.frombuffer(raw[:header_bytes], dtype=">i4")
  if len(header) * 4 != header_bytes or header[0] != magic or tuple(header[2:]) != tuple(shape_tail[:2]):
    raise ValueError(f"{path} does not start with an IDX header for shape (N, {shape_tail})")
  values = np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)
  if values.size != header[1] * int(np.prod(shape_tail)):
    raise ValueError(f"{path} holds {values.size} bytes of data, not the {header[1]} items its header says")
  return values.reshape((-1, *shape_tail))


def load_fashion_mnist(data_config):
  """{'train': (images, labels), 'test': ...} from the IDX files, or None to fall back to tfds.

  With no local copy tfds is allowed to download (when there is a network); if it cannot, the user
  gets one line saying where the files were looked for (`missing_files_hint`).
  """
  directory = data_config.fashion_mnist_dir
  paths = {split: [os.path.join(directory, f) for f in files] for split, files in FASHION_MNIST_FILES.items()}
  missing = [p for split_paths in paths.values() for p in split_paths if not os.path.isfile(p)]
  if missing:
    if not data_config.download:
      raise ConfigError(
          f"Fashion-MNIST files are missing from data.fashion_mnist_dir={directory!r} (e.g. {missing[0]}) and "
          f"data.download is off; install them with {INSTALL}")
    return None
  arrays = {}
  for split, (images_path, labels_path) in paths.items():
    try:
      images = read_idx(images_path, IDX_IMAGES_MAGIC, IDX_IMAGES_HEADER_BYTES, FASHION_MNIST_SHAPE)
      labels = read_idx(labels_path, IDX_LABELS_MAGIC, IDX_LABELS_HEADER_BYTES, ()).astype(np.int32)
    except (OSError, ValueError, EOFError) as e:
      raise ConfigError(f"cannot read Fashion-MNIST from {directory!r}: {e}".splitlines()[0]) from None
    if len(images) != len(labels):
      raise ConfigError(f"Fashion-MNIST in {directory!r}: {len(images)} images but {len(labels)} labels ({split})")
    arrays[split] = (images, labels)
  return arrays


def missing_files_hint(data_config):
  """The end of the one-line error when tfds cannot prepare fashion_mnist either."""
  return (f"; no Fashion-MNIST IDX files in data.fashion_mnist_dir={data_config.fashion_mnist_dir!r} either "
          f"(install them with {INSTALL})")


def in_memory_data(config, arrays, eval_only):
  """Data over the uint8 arrays of load_fashion_mnist: a new order each epoch, random horizontal flips."""
  train_images, train_labels = limit(arrays["train"], config.data.max_train_examples)
  eval_images, eval_labels = limit(arrays["test"], config.data.max_eval_examples)
  batch_size, flip = config.batch_size, config.data.flip
  steps_per_epoch = epoch_steps(len(train_images), batch_size, eval_only)

  def make_batch(indices, rng, rows):
    flips = rng.random(batch_size)[rows] < FLIP_PROBABILITY
    images = gather(train_images, indices)
    if flip:
      images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    return {"images": images, "labels": train_labels[indices]}

  def train_batches(step):
    return array_train_batches(len(train_images), batch_size, config.seed, step, make_batch)

  return Data("fashion_mnist", FASHION_MNIST_CLASSES, len(train_images), len(eval_images), steps_per_epoch,
              train_batches, lambda: array_eval_batches(eval_images, eval_labels, batch_size))
