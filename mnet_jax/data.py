"""Input pipelines: Fashion-MNIST from Debian's IDX files, and any tfds image-classification dataset.

The order of training examples is a pure function of (seed, epoch, position in the epoch), so the step
number saved in a checkpoint is all a resumed run needs to see exactly the batches it would have seen.
Each process reads its own slice of every global batch; evaluation covers the whole split exactly
(the last batch is padded and the padding masked). Image datasets read in one of three input modes (jpeg,
prepared_jpeg, uint8_store; docs/input-pipeline.md) and cross to the devices as uint8, where `on_device`
finishes them inside the jitted step.
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


INPUT_MODES = ("jpeg", "prepared_jpeg", "uint8_store")


def input_mode(data_config):
  """config.data.input_mode, checked against config.data.prepared_dir: 'jpeg' reads the dataset's own records
  (tfds, or Fashion-MNIST's IDX files); the other two read a copy written by `python -m mnet_jax.prepare`."""
  mode = data_config.get("input_mode", "jpeg")
  prepared_dir = data_config.get("prepared_dir")
  if mode not in INPUT_MODES:
    raise ConfigError(f"data.input_mode={mode!r} is unknown; allowed: {', '.join(INPUT_MODES)}")
  if mode == "jpeg" and prepared_dir is not None:
    raise ConfigError(f"data.prepared_dir={prepared_dir!r} is set but data.input_mode='jpeg' does not read it; "
                      "use data.input_mode='prepared_jpeg' or 'uint8_store', or unset data.prepared_dir")
  if mode != "jpeg" and prepared_dir is None:
    raise ConfigError(f"data.input_mode={mode!r} needs data.prepared_dir (a directory written by "
                      "`python -m mnet_jax.prepare`)")
  return mode


def build(config, eval_only=False):
  """The Data for config.data at config.resolution with global batch size config.batch_size."""
  from mnet_jax.models.mobilenet_v1 import check_resolution
  check_resolution(config.resolution)
  check_batch_size(config.batch_size)
  mode = input_mode(config.data)
  if mode == "uint8_store":
    return uint8_store_data(config, eval_only)
  if mode == "prepared_jpeg":
    return jpeg_data(config, eval_only, prepared_records(config))
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


def epoch_steps(num_train, batch_size, eval_only):
  """Whole batches in an epoch of num_train examples; a training set smaller than a batch is refused."""
  if num_train < batch_size and not eval_only:
    raise ConfigError(f"batch_size={batch_size} is larger than the training set ({num_train} examples)")
  return num_train // batch_size


def limit(arrays, max_examples):
  return arrays if max_examples is None else tuple(a[:max_examples] for a in arrays)


def in_memory_data(config, arrays, eval_only):
  """Data over uint8 numpy arrays: shuffled per epoch, random horizontal flips; the images cross to the device at
  their stored size and `on_device` resizes them to config.resolution."""
  train_images, train_labels = limit(arrays["train"], config.data.max_train_examples)
  eval_images, eval_labels = limit(arrays["test"], config.data.max_eval_examples)
  batch_size, seed = config.batch_size, config.seed
  steps_per_epoch = epoch_steps(len(train_images), batch_size, eval_only)
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
        yield {"images": images, "labels": train_labels[indices]}
        step += 1

  def eval_batches():
    local_batch = rows.stop - rows.start
    # Process p takes examples p, p + P, p + 2P, ...: every process gets the same number of batches.
    mine = np.arange(jax.process_index(), len(eval_images), jax.process_count())
    num_batches = eval_batch_count(len(eval_images), batch_size)
    for b in range(num_batches):
      indices = mine[b * local_batch:(b + 1) * local_batch]
      yield pad_batch({"images": eval_images[indices], "labels": eval_labels[indices]}, local_batch)

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
  """Inception-style training crop from the whole decoded image: a random box of area in [min_area, 1] and aspect
  in [3/4, 4/3], resized, randomly flipped, scaled to [-1, 1] in float32. `seed` makes it a pure function of the
  example's position. The reference that `jpeg_crop` must match (same boxes, same flips); the benchmark's baseline."""
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


def image_shape(image_bytes):
  """(height, width, 3) read from the header of a JPEG, else from the decoded image (PNG, GIF, BMP)."""
  import tensorflow as tf
  return tf.cond(tf.io.is_jpeg(image_bytes),
                 lambda: tf.concat([tf.image.extract_jpeg_shape(image_bytes)[:2], [3]], 0),
                 lambda: tf.shape(decode_image(image_bytes)))


def crop_box(image_bytes, seed, min_area):
  """inception_crop's box (begin, size) for the same seed, from the image's header alone."""
  import tensorflow as tf
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape(image_bytes), tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_area, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def decode_window(image_bytes, offset_y, offset_x, height, width, resolution):
  """The window's pixels (uint8, 3 channels), to be resized to `resolution`. A JPEG decodes only the window, at
  1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, a low-pass filter) where the scaled window's shorter side stays
  >= 2x the resolution: the resize after it (resize_uint8) then works on fewer pixels and still filters. (Scaling
  further, to >= 1x, moves the window by up to a scaled pixel, since the scaled window's corner is rounded:
  1.2-3.1/255 mean difference from the full-decode crop instead of 0.7-1.4; docs/input-pipeline.md.)"""
  import tensorflow as tf

  def scaled(ratio):
    window = tf.stack([offset_y // ratio, offset_x // ratio, height // ratio, width // ratio])
    return lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3, ratio=ratio)

  def jpeg():
    shorter = tf.minimum(height, width)
    index = sum(tf.cast(shorter >= 2 * ratio * resolution, tf.int32) for ratio in (2, 4, 8))
    return tf.switch_case(index, [scaled(ratio) for ratio in (1, 2, 4, 8)])

  return tf.cond(tf.io.is_jpeg(image_bytes), jpeg,
                 lambda: tf.image.crop_to_bounding_box(decode_image(image_bytes), offset_y, offset_x, height, width))


def resize_uint8(image, resolution):
  """Antialiased resize to resolution x resolution, rounded back to uint8: bilinear where both sides grow (there
  the antialiased bilinear filter is plain bilinear), the area (box) filter where both shrink, TensorFlow's
  antialiased bilinear (ScaleAndTranslate, 2-3x the cost of the other two) where one grows and one shrinks."""
  import tensorflow as tf
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  size = (resolution, resolution)
  resized = tf.case([
      (tf.logical_and(height <= resolution, width <= resolution),
       lambda: tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")),
      (tf.logical_and(height >= resolution, width >= resolution),
       lambda: tf.image.resize(image, size, method="area")),
  ], default=lambda: tf.image.resize(tf.cast(image, tf.float32), size, antialias=True))
  return tf.saturate_cast(tf.round(resized), tf.uint8)


def jpeg_crop(image_bytes, seed, resolution, min_area, flip):
  """inception_crop's box and flip for the same seed, decoding only the crop window (see decode_window); uint8 out
  (scaled to [-1, 1] on the device by `on_device`)."""
  import tensorflow as tf
  begin, size = crop_box(image_bytes, seed, min_area)
  image = resize_uint8(decode_window(image_bytes, begin[0], begin[1], size[0], size[1], resolution), resolution)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seed + tf.constant([0, 1], tf.int64))
  return image


def central_crop(image_bytes, resolution, crop_fraction):
  """Evaluation: the central crop_fraction of the shorter side (only that window decoded), resized, uint8."""
  import tensorflow as tf
  shape = image_shape(image_bytes)
  height, width = shape[0], shape[1]
  crop = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction, tf.int32)
  window = decode_window(image_bytes, (height - crop) // 2, (width - crop) // 2, crop, crop, resolution)
  return resize_uint8(window, resolution)


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


@dataclasses.dataclass
class Records:
  """Where a JPEG pipeline reads: read(split, num_examples, shuffle_seed) -> this process's dataset of
  (image bytes, int32 label), files shuffled when shuffle_seed is set."""
  name: str
  num_classes: int
  num_train: int
  num_eval: int
  read: Callable


def tfds_records(config):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  data_config = config.data
  builder = tfds_builder(data_config)
  image_key, label_key = builder.info.supervised_keys
  decoders = {image_key: tfds.decode.SkipDecoding()}

  def read(split, num_examples, shuffle_seed=None):
    training = shuffle_seed is not None
    process_split = tfds.even_splits(f"{split}[:{num_examples}]", jax.process_count(), drop_remainder=training)
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, options=pipeline_options())
    ds = builder.as_dataset(split=process_split[jax.process_index()], shuffle_files=training, decoders=decoders,
                            read_config=read_config)
    # The slice above already limits the examples; take() makes sure of it where slicing is not honoured.
    share = num_examples // jax.process_count() if training else -(-num_examples // jax.process_count())
    return ds.take(share).map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

  return Records(data_config.name, builder.info.features[label_key].num_classes,
                 split_size(builder, data_config.train_split), split_size(builder, data_config.eval_split), read)


def prepared_records(config):
  """The re-encoded JPEG shards of data.prepared_dir, read like tfds records."""
  import tensorflow as tf
  from mnet_jax import prepare
  manifest = prepare.check_prepared(config, "prepared_jpeg")
  directory = config.data.prepared_dir
  features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

  def read(split, num_examples, shuffle_seed=None):
    files = [os.path.join(directory, name) for name in manifest["splits"][split]["prepared_jpeg"]["files"]]
    # The files' order is shuffled only when the whole split is read: a first-N subset stays the same N.
    if shuffle_seed is not None and num_examples == manifest["splits"][split]["count"]:
      files = [files[i] for i in np.random.default_rng(shuffle_seed).permutation(len(files))]
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(16, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
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


def tfds_data(config, eval_only):
  return jpeg_data(config, eval_only, tfds_records(config))


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


# The uint8 array store: the host gathers rows, the device crops -------------------------------


def sample_boxes(rng, count, height, width, min_area):
  """(count, 4) float32 boxes (y, x, h, w) by tf.image.sample_distorted_bounding_box's rule (aspect in [3/4, 4/3]
  drawn per attempt, height uniform over the heights whose area is in [min_area, 1], up to 10 attempts, else the
  whole image), vectorised over the batch."""
  boxes = np.tile(np.array([0, 0, height, width], np.float32), (count, 1))
  todo = np.ones(count, bool)
  for _ in range(10):
    aspect = rng.uniform(3 / 4, 4 / 3, count)
    min_h = np.rint(np.sqrt(min_area * height * width / aspect))
    max_h = np.rint(np.sqrt(height * width / aspect))
    too_wide = np.rint(max_h * aspect) > width
    max_h = np.where(too_wide, np.floor((width + 0.5 - 1e-7) / aspect), max_h)
    max_h = np.where(too_wide & (np.rint(max_h * aspect) > width), max_h - 1, max_h)
    max_h = np.minimum(max_h, height)
    min_h = np.minimum(min_h, max_h)
    h = min_h + np.floor(rng.random(count) * (max_h - min_h + 1))
    w = np.rint(h * aspect)
    area = h * w
    low = area < min_area * height * width
    h = np.where(low, h + 1, h)
    w = np.where(low, np.rint(h * aspect), w)
    high = h * w > height * width
    h = np.where(high, h - 1, h)
    w = np.where(high, np.rint(h * aspect), w)
    ok = todo & (h * w >= min_area * height * width) & (h * w <= height * width) & (w <= width) & (h <= height) & (
        w > 0) & (h > 0)
    y = np.floor(rng.random(count) * np.maximum(height - h, 1)) * (h < height)
    x = np.floor(rng.random(count) * np.maximum(width - w, 1)) * (w < width)
    boxes[ok] = np.stack([y, x, h, w], 1)[ok]
    todo &= ~ok
  return boxes


def central_boxes(count, size, crop_fraction):
  crop = int(size * crop_fraction)
  return np.tile(np.array([(size - crop) // 2, (size - crop) // 2, crop, crop], np.float32), (count, 1))


def uint8_store_data(config, eval_only):
  """Data over the fixed-size uint8 store of data.prepared_dir, read by memory map: the host gathers rows and
  draws the boxes and flips (numpy, a pure function of seed, epoch and position); `on_device` crops."""
  from mnet_jax import prepare
  manifest = prepare.check_prepared(config, "uint8_store")
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
  rows = process_slice(batch_size)

  def train_batches(step):
    return store_train_batches(train_images, train_labels, batch_size, seed, data_config.min_area, data_config.flip,
                               step)

  def eval_batches():
    local_batch = rows.stop - rows.start
    mine = np.arange(jax.process_index(), len(eval_images), jax.process_count())
    for b in range(eval_batch_count(len(eval_images), batch_size)):
      indices = mine[b * local_batch:(b + 1) * local_batch]
      batch = pad_batch({"images": gather(eval_images, indices), "labels": eval_labels[indices]}, local_batch)
      batch.update(boxes=central_boxes(local_batch, size, data_config.eval_crop_fraction),
                   flips=np.zeros(local_batch, bool))
      yield batch

  return Data(manifest["source"], manifest["num_classes"], len(train_images), len(eval_images), steps_per_epoch,
              train_batches, eval_batches)


def store_train_batches(images, labels, batch_size, seed, min_area, flip, step):
  """Training batches of a uint8 store from global step `step` on: rows in a per-epoch order, with the boxes and
  flips that `on_device` applies."""
  steps_per_epoch = len(images) // batch_size
  size = images.shape[1]
  rows = process_slice(batch_size)
  while True:
    epoch, position = divmod(step, steps_per_epoch)
    order = epoch_rng(seed, epoch).permutation(len(images))
    for position in range(position, steps_per_epoch):
      indices = order[position * batch_size:(position + 1) * batch_size][rows]
      rng = epoch_rng(seed, epoch, position)
      boxes = sample_boxes(rng, batch_size, size, size, min_area)[rows]
      flips = (rng.random(batch_size) < 0.5)[rows] & flip
      yield {"images": gather(images, indices), "labels": labels[indices], "boxes": boxes, "flips": flips}
      step += 1


def gather(images, indices):
  """Rows of a memory-mapped array, read in file order."""
  order = np.argsort(indices)
  out = np.empty((len(indices), *images.shape[1:]), images.dtype)
  out[order] = images[indices[order]]
  return out


# On the device, inside the jitted step -----------------------------------------------------------


def crop_and_resize(images, boxes, flips, resolution):
  """Per-example antialiased crop of boxes (y, x, h, w) resized to resolution x resolution, then flipped where
  flips is set: float32 pixel values."""
  import jax.numpy as jnp

  def one(image, box, flip):
    scale = resolution / box[2:]
    out = jax.image.scale_and_translate(image.astype(jnp.float32), (resolution, resolution, image.shape[-1]),
                                        (0, 1), scale, -box[:2] * scale, method="linear", antialias=True)
    return jnp.where(flip, out[:, ::-1], out)

  return jax.vmap(one)(images, boxes, flips)


def on_device(batch, resolution):
  """The batch the model reads: crops of uint8-store batches, uint8 images of another size (Fashion-MNIST's
  28 x 28) resized with the antialiased bilinear filter, then pixels scaled to [-1, 1] in float32 and grey
  repeated to 3 channels (float32 batches pass unchanged). Runs at the start of the jitted train and eval steps."""
  import jax.numpy as jnp
  images = batch["images"]
  if "boxes" in batch:
    images = crop_and_resize(images, batch["boxes"], batch["flips"], resolution)
  elif images.dtype != jnp.uint8:
    return batch
  elif images.shape[1:3] != (resolution, resolution):
    images = jax.image.resize(images.astype(jnp.float32), (len(images), resolution, resolution, images.shape[-1]),
                              "linear", antialias=True)
  images = jnp.clip(images.astype(jnp.float32) / 127.5 - 1.0, -1.0, 1.0)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  return {**{k: v for k, v in batch.items() if k not in ("boxes", "flips")}, "images": images}
