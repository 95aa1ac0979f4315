"""Input pipelines: Fashion-MNIST from Debian's IDX files, and any tfds image-classification dataset.

`build(config)` picks the source for config.data and returns a `Data`. Image datasets read in one of three input
modes (jpeg, prepared_jpeg, uint8_store; docs/input-pipeline.md) and cross to the devices as uint8, where
`on_device` finishes them inside the jitted step. One module per source and stage:

  batching.py       batch order (a pure function of seed, epoch, position), process slices, padded evaluation
  fashion_mnist.py  the Fashion-MNIST IDX reader and its in-memory batches
  tfds_source.py    tfds builders (prepared, downloaded, or one line why not) and their records
  jpeg_ops.py       TensorFlow ops on one encoded image: training crop, evaluation crop
  boxes.py          the Inception crop-box rule, TensorFlow's sampler and its numpy copy
  records.py        the tf.data pipeline over JPEG records (tfds or prepared)
  prepared.py       the prepared copy's manifest and JPEG shards
  uint8_store.py    the prepared copy's uint8 arrays, gathered on the host
  device.py         on-device crops and scaling
"""

# The names that training, evaluation, the benchmarks and the tests use, importable as `data.<name>`.
from mnet_jax.data.batching import Data, check_batch_size
from mnet_jax.data.boxes import central_boxes, sample_boxes
from mnet_jax.data.device import crop_and_resize, on_device
from mnet_jax.data.fashion_mnist import in_memory_data, load_fashion_mnist, missing_files_hint
from mnet_jax.data.jpeg_ops import (central_crop, crop_box, decode_image, decode_window, image_shape, inception_crop,
                                    jpeg_crop, resize_uint8)
from mnet_jax.data.prepared import check_prepared, prepared_records
from mnet_jax.data.records import Records, jpeg_data, pipeline_options
from mnet_jax.data.tfds_source import split_size, tfds_builder, tfds_data
from mnet_jax.data.uint8_store import store_train_batches, uint8_store_data
from mnet_jax.errors import ConfigError
from mnet_jax.process import hide_gpus_from_tensorflow

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
  hint = ""
  if config.data.name == "fashion_mnist":
    arrays = load_fashion_mnist(config.data)
    if arrays is not None:
      return in_memory_data(config, arrays, eval_only)
    hint = missing_files_hint(config.data)
  return tfds_data(config, eval_only, hint)
