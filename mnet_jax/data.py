"""Input pipelines: Fashion-MNIST from Debian's IDX files, and any tfds image-classification dataset.

The order of training examples is a pure function of (seed, epoch, position in the epoch), so the step
number saved in a checkpoint is all a resumed run needs to see exactly the batches it would have seen.
Each process reads its own slice of every global batch; evaluation covers the whole split exactly
(the last batch is padded and the padding masked).
"""

import dataclasses
import gzip
import os
from typing import Callable, Iterator

import jax
import numpy as np

from mnet_jax.errors import ConfigError

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = 10
IDX_IMAGES_MAGIC, IDX_IMAGES_HEADER_BYTES = 2051, 16  # magic, count, rows, columns (big-endian int32)
IDX_LABELS_MAGIC, IDX_LABELS_HEADER_BYTES = 2049, 8  # magic, count


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


def hide_gpus_from_tensorflow():
  """TensorFlow only feeds data; keep it off the accelerators that JAX uses."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


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


def build(config, eval_only=False):
  """The Data for config.data at config.resolution with global batch size config.batch_size."""
  from mnet_jax.models.mobilenet_v1 import check_resolution
  check_resolution(config.resolution)
  check_batch_size(config.batch_size)
  hide_gpus_from_tensorflow()
  if config.data.name == "fashion_mnist":
    arrays = load_fashion_mnist(config.data)
    if arrays is not None:
      return in_memory_data(config, arrays, eval_only)
  return tfds_data(config, eval_only)


# Fashion-MNIST from IDX files -------------------------------------------------------------------


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
  gets one line saying where the files were looked for.
  """
  directory = data_config.fashion_mnist_dir
  paths = {split: [os.path.join(directory, f) for f in files] for split, files in FASHION_MNIST_FILES.items()}
  missing = [p for split_paths in paths.values() for p in split_paths if not os.path.isfile(p)]
  if missing:
    if not data_config.download:
      raise ConfigError(
          f"Fashion-MNIST files are missing from data.fashion_mnist_dir={directory!r} (e.g. {missing[0]}) and "
          "data.download is off; install them with `apt-get install dataset-fashion-mnist`")
    return None
  arrays = {}
  for split, (images_path, labels_path) in paths.items():
    try:
      images = read_idx(images_path, IDX_IMAGES_MAGIC, IDX_IMAGES_HEADER_BYTES, (28, 28, 1))
      labels = read_idx(labels_path, IDX_LABELS_MAGIC, IDX_LABELS_HEADER_BYTES, ()).astype(np.int32)
    except (OSError, ValueError, EOFError) as e:
      raise ConfigError(f"cannot read Fashion-MNIST from {directory!r}: {e}".splitlines()[0]) from None
    if len(images) != len(labels):
      raise ConfigError(f"Fashion-MNIST in {directory!r}: {len(images)} images but {len(labels)} labels ({split})")
    arrays[split] = (images, labels)
  return arrays


def to_model_input(images_uint8, resolution):
  """uint8 (N, h, w, c) -> float32 (N, resolution, resolution, 3) in [-1, 1]."""
  import tensorflow as tf
  images = tf.image.resize(tf.cast(images_uint8, tf.float32), (resolution, resolution), antialias=True).numpy()
  images = images / 127.5 - 1.0
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return np.clip(images, -1.0, 1.0).astype(np.float32)


def limit(arrays, max_examples):
  return arrays if max_examples is None else tuple(a[:max_examples] for a in arrays)


def in_memory_data(config, arrays, eval_only):
  """Data over numpy arrays: shuffled per epoch, random horizontal flips, resized to config.resolution."""
  train_images, train_labels = limit(arrays["train"], config.data.max_train_examples)
  eval_images, eval_labels = limit(arrays["test"], config.data.max_eval_examples)
  batch_size, resolution, seed = config.batch_size, config.resolution, config.seed
  steps_per_epoch = len(train_images) // batch_size
  if steps_per_epoch < 1 and not eval_only:
    raise ConfigError(f"batch_size={batch_size} is larger than the training set ({len(train_images)} examples)")
  rows = process_slice(batch_size)

  def train_batches(step):
    while True:
      epoch, position = divmod(step, steps_per_epoch)
      order = epoch_rng(seed, epoch).permutation(len(train_images))
      for position in range(position, steps_per_epoch):
        indices = order[position * batch_size:(position + 1) * batch_size][rows]
        flips = epoch_rng(seed, epoch, position).random(batch_size)[rows] < 0.5
        images = train_images[indices]
        if config.data.flip:
          images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
        yield {"images": to_model_input(images, resolution), "labels": train_labels[indices]}
        step += 1

  def eval_batches():
    local_batch = rows.stop - rows.start
    # Process p takes examples p, p + P, p + 2P, ...: every process gets the same number of batches.
    mine = np.arange(jax.process_index(), len(eval_images), jax.process_count())
    num_batches = eval_batch_count(len(eval_images), batch_size)
    for b in range(num_batches):
      indices = mine[b * local_batch:(b + 1) * local_batch]
      yield pad_batch(
          {"images": to_model_input(eval_images[indices], resolution), "labels": eval_labels[indices]}, local_batch)

  return Data("fashion_mnist", FASHION_MNIST_CLASSES, len(train_images), len(eval_images), steps_per_epoch,
              train_batches, eval_batches)


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


# tensorflow-datasets ----------------------------------------------------------------------------


def tfds_builder(data_config):
  import tensorflow_datasets as tfds
  data_dir = data_config.data_dir
  if data_dir is not None and not (os.path.isdir(data_dir) and os.access(data_dir, os.R_OK | os.X_OK)):
    raise ConfigError(f"data.data_dir={data_dir!r} is not a readable directory")
  try:
    builder = tfds.builder(data_config.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(
        f"data.name={data_config.name!r} is not a tensorflow-datasets dataset; use 'fashion_mnist', "
        "'imagenet2012' or any name from tfds.list_builders()") from None
  features = builder.info.features
  keys = builder.info.supervised_keys
  if not keys or "image" not in features or "label" not in features:
    raise ConfigError(f"data.name={data_config.name!r} is not an image classification dataset (needs 'image' and "
                      "'label' features)")
  if not builder.is_prepared():
    prepare(builder, data_config)
  return builder


def prepare(builder, data_config):
  """Prepares a tfds dataset (download, or the manual files for imagenet2012); one line if that fails."""
  import tensorflow_datasets as tfds
  manual_dir = data_config.manual_dir
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise ConfigError(f"data.manual_dir={manual_dir!r} is not a directory")
  if not data_config.download:
    raise ConfigError(f"{builder.name} is not prepared in {builder.data_dir} and data.download is off")
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # tfds raises many kinds (network, manual-download assertion, ...): report one line
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    extra = ""
    if builder.name == "fashion_mnist":
      extra = (f"; no Fashion-MNIST IDX files in data.fashion_mnist_dir={data_config.fashion_mnist_dir!r} either "
               "(install them with `apt-get install dataset-fashion-mnist`)")
    elif builder.name == "imagenet2012":
      extra = ("; imagenet2012 needs ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in data.manual_dir "
               f"(now {manual_dir!r}), see docs/training.md")
    raise ConfigError(f"cannot prepare tfds dataset {builder.name!r} in {builder.data_dir}: {reason}{extra}") from None


def split_size(builder, split):
  if split in builder.info.splits:
    return builder.info.splits[split].num_examples
  try:  # a builder without split metadata (e.g. under tfds.testing.mock_data): ask the dataset itself
    size = int(builder.as_dataset(split=split).cardinality())
  except (KeyError, ValueError):
    size = -1
  if size < 0:
    raise ConfigError(f"split {split!r} is not in {builder.name}; it has: {', '.join(builder.info.splits)}")
  return size


def decode_image(image_bytes):
  import tensorflow as tf
  return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def inception_crop(image_bytes, seed, resolution, min_area, flip):
  """Inception-style training crop: a random box of area in [min_area, 1] and aspect in [3/4, 4/3], resized,
  randomly flipped, scaled to [-1, 1]. `seed` makes it a pure function of the example's position."""
  import tensorflow as tf
  image = decode_image(image_bytes)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_area, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, size)
  image = tf.image.resize(tf.cast(image, tf.float32), (resolution, resolution), antialias=True)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seed + tf.constant([0, 1], tf.int64))
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def central_crop(image_bytes, resolution, crop_fraction):
  """Evaluation: the central crop_fraction of the shorter side, resized, scaled to [-1, 1]."""
  import tensorflow as tf
  image = decode_image(image_bytes)
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  crop = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction, tf.int32)
  image = tf.image.crop_to_bounding_box(image, (height - crop) // 2, (width - crop) // 2, crop, crop)
  image = tf.image.resize(tf.cast(image, tf.float32), (resolution, resolution), antialias=True)
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def tfds_data(config, eval_only):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  data_config = config.data
  builder = tfds_builder(data_config)
  image_key, label_key = builder.info.supervised_keys
  num_classes = builder.info.features[label_key].num_classes
  num_train = split_size(builder, data_config.train_split)
  num_eval = split_size(builder, data_config.eval_split)
  if data_config.max_train_examples is not None:
    num_train = min(num_train, data_config.max_train_examples)
  if data_config.max_eval_examples is not None:
    num_eval = min(num_eval, data_config.max_eval_examples)
  batch_size, resolution, seed = config.batch_size, config.resolution, config.seed
  local_batch = batch_size // jax.process_count()
  steps_per_epoch = num_train // batch_size
  if steps_per_epoch < 1 and not eval_only:
    raise ConfigError(f"batch_size={batch_size} is larger than the training set ({num_train} examples)")
  options = tf.data.Options()
  options.deterministic = True
  decoders = {image_key: tfds.decode.SkipDecoding()}

  def read(split, num_examples, shuffle_seed=None):
    """This process's share of the first num_examples of split (files shuffled when shuffle_seed is set)."""
    training = shuffle_seed is not None
    process_split = tfds.even_splits(f"{split}[:{num_examples}]", jax.process_count(), drop_remainder=training)
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, options=options)
    ds = builder.as_dataset(split=process_split[jax.process_index()], shuffle_files=training, decoders=decoders,
                            read_config=read_config)
    # The slice above already limits the examples; take() makes sure of it where slicing is not honoured.
    share = num_examples // jax.process_count() if training else -(-num_examples // jax.process_count())
    return ds.take(share).map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

  def epoch_dataset(epoch, position):
    epoch_seed = int(epoch_rng(seed, epoch).integers(2**31))
    ds = read(data_config.train_split, num_train, shuffle_seed=epoch_seed)
    ds = ds.shuffle(data_config.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.take(steps_per_epoch * local_batch).enumerate().skip(position * local_batch)

    def preprocess(index, example):
      image_bytes, label = example
      example_seed = tf.stack([tf.constant(epoch_seed, tf.int64), index * jax.process_count() + jax.process_index()])
      image = inception_crop(image_bytes, example_seed, resolution, data_config.min_area, data_config.flip)
      return {"images": image, "labels": label}

    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)

  def train_batches(step):
    epoch, position = divmod(step, steps_per_epoch)
    while True:
      yield from tfds.as_numpy(epoch_dataset(epoch, position))
      epoch, position = epoch + 1, 0

  def eval_batches():
    ds = read(data_config.eval_split, num_eval)
    ds = ds.map(lambda image_bytes, label: {
        "images": central_crop(image_bytes, resolution, data_config.eval_crop_fraction), "labels": label},
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch).prefetch(tf.data.AUTOTUNE).with_options(options)
    # even_splits gives processes shard sizes that differ by at most one: every process yields as many
    # batches as the largest shard needs, padding with fully masked batches.
    num_batches = eval_batch_count(num_eval, batch_size)
    count = 0
    for batch in tfds.as_numpy(ds):
      count += 1
      yield pad_batch(batch, local_batch)
    empty = {"images": np.zeros((0, resolution, resolution, 3), np.float32), "labels": np.zeros((0,), np.int32)}
    for _ in range(count, num_batches):
      yield pad_batch(empty, local_batch)

  return Data(data_config.name, num_classes, num_train, num_eval, steps_per_epoch, train_batches, eval_batches)
