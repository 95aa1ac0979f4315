r"""Writes a low-resolution copy of a tfds image dataset once, for the prepared input modes.

  python -m mnet_jax.prepare --config mnet_jax/configs/imagenet.py:resolution=128 --out /data/imagenet-160 \
      --config.data.data_dir=/data/tfds [--size 160] [--formats prepared_jpeg,uint8_store]

Both splits of the config (data.train_split, data.eval_split) are resized so that the shorter side is --size
(default: 1.25x config.resolution, the largest resolution that will train from the copy) and written as
  - prepared_jpeg: re-encoded JPEG (quality --quality, default 95) TFRecord shards, `{split}-NNNNN.tfrecord`;
  - uint8_store: the central size x size square of each image in one uint8 array `{split}-images.npy`
    (N, size, size, 3) read by memory map, and `{split}-labels.npy`.
Training reads it with `--config.data.prepared_dir=DIR --config.data.input_mode=prepared_jpeg` (or uint8_store).
The work is done shard by shard (--shard-size examples), decoded and encoded in parallel on every core; a shard
is recorded as done only once its files are complete, so a run that was stopped continues where it was when
started again with the same flags. manifest.json (source, size, quality, counts, checksums) is written last.

For tests only: with MNET_JAX_TEST_KILL_AFTER_SHARD={split}-NNNNN in the environment (e.g. validation-00009),
the process SIGKILLs itself once that shard is recorded as done.
"""

import hashlib
import json
import os
import signal
import sys

import numpy as np

from mnet_jax import config_file, process
from mnet_jax.data.jpeg_ops import decode_image
from mnet_jax.data.prepared import MANIFEST, read_json
from mnet_jax.data.records import pipeline_options
from mnet_jax.data.tfds_source import split_size, tfds_builder
from mnet_jax.errors import ConfigError, OneLineArgumentParser, exit_on_config_error
from mnet_jax.workdir import write_atomically

FORMATS = ("prepared_jpeg", "uint8_store")
KILL_AFTER_SHARD = "MNET_JAX_TEST_KILL_AFTER_SHARD"  # tests only (module docstring)
SIZE_FACTOR = 1.25  # shorter side stored / training resolution (fast.ai's 128 px from 160, 224 from ~280)


def default_size(resolution):
  return int(round(SIZE_FACTOR * resolution))


def sha256(data):
  return hashlib.sha256(data).hexdigest()


def resized_and_encoded(size, quality, formats):
  """A tf function: image bytes -> (JPEG bytes of the image with shorter side `size`, its central square)."""
  import tensorflow as tf

  def resize_and_encode(image_bytes):
    image = decode_image(image_bytes)
    shape = tf.shape(image)
    scale = size / tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    new_shape = tf.maximum(tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale), tf.int32), size)
    image = tf.saturate_cast(tf.round(tf.image.resize(tf.cast(image, tf.float32), new_shape, antialias=True)),
                             tf.uint8)
    jpeg = tf.io.encode_jpeg(image, quality=quality) if "prepared_jpeg" in formats else tf.constant(b"")
    if "uint8_store" in formats:
      square = tf.image.crop_to_bounding_box(image, (new_shape[0] - size) // 2, (new_shape[1] - size) // 2, size,
                                             size)
    else:
      square = tf.zeros([0, 0, 3], tf.uint8)
    return jpeg, square

  return resize_and_encode


def tf_example(jpeg, label):
  import tensorflow as tf
  return tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
      "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))})).SerializeToString(
          deterministic=True)  # map order fixed: the same bytes in every run


def open_store(path, count, size, fresh):
  """The split's uint8 array (memory-mapped, writable), created when fresh or unreadable."""
  from numpy.lib.format import open_memmap
  shape = (count, size, size, 3)
  if not fresh:
    try:
      store = open_memmap(path, mode="r+")
      if store.shape == shape and store.dtype == np.uint8:
        return store, False
    except (OSError, ValueError):
      pass
  return open_memmap(path, mode="w+", dtype=np.uint8, shape=shape), True


def prepare_split(builder, split, out, settings, bar):
  """Writes one split shard by shard, skipping the shards recorded as done; returns its manifest entry."""
  import tensorflow as tf
  import tensorflow_datasets as tfds
  count = split_size(builder, split)
  shard_size, size, formats = settings["shard_size"], settings["size"], settings["formats"]
  num_shards = -(-count // shard_size)
  done_path = lambda k: os.path.join(out, ".done", f"{split}-{k:05d}.json")  # noqa: E731
  done = [read_json(done_path(k)) for k in range(num_shards)]
  store = None
  if "uint8_store" in formats:
    store, created = open_store(os.path.join(out, f"{split}-images.npy"), count, size, fresh=not any(done))
    if created:
      done = [None] * num_shards  # the array is new: every shard must write its rows again
  first = next((k for k, d in enumerate(done) if d is None), num_shards)
  bar.update(first * shard_size if first < num_shards else count)
  if first < num_shards:
    image_key, label_key = builder.info.supervised_keys
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(options=pipeline_options()))
    encode = resized_and_encoded(size, settings["quality"], formats)
    ds = ds.take(count).skip(first * shard_size).map(
        lambda ex: (*encode(ex[image_key]), tf.cast(ex[label_key], tf.int64)), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(shard_size).prefetch(1).with_options(pipeline_options())
    for k, (jpegs, squares, labels) in zip(range(first, num_shards), tfds.as_numpy(ds)):
      record = {"count": len(labels), "labels_sha256": sha256(labels.astype(np.int32).tobytes()),
                "labels": labels.tolist()}
      if "prepared_jpeg" in formats:
        name = f"{split}-{k:05d}.tfrecord"
        with tf.io.TFRecordWriter(os.path.join(out, name + ".tmp")) as writer:
          for jpeg, label in zip(jpegs, labels):
            writer.write(tf_example(jpeg, label))
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
        with open(os.path.join(out, name), "rb") as f:
          record["tfrecord_sha256"] = sha256(f.read())
      if store is not None:
        store[k * shard_size:k * shard_size + len(labels)] = squares
        store.flush()
        record["uint8_sha256"] = sha256(squares.tobytes())
      write_atomically(done_path(k), json.dumps(record))
      if os.environ.get(KILL_AFTER_SHARD) == f"{split}-{k:05d}":
        os.kill(os.getpid(), signal.SIGKILL)
      done[k] = record
      bar.update(len(labels))
  entry = {"count": count, "shards": num_shards}
  labels = np.concatenate([np.asarray(d["labels"], np.int32) for d in done]) if count else np.zeros(0, np.int32)
  if "prepared_jpeg" in formats:
    entry["prepared_jpeg"] = {"files": [f"{split}-{k:05d}.tfrecord" for k in range(num_shards)],
                              "sha256": [d["tfrecord_sha256"] for d in done]}
  if store is not None:
    labels_name = f"{split}-labels.npy"
    np.save(os.path.join(out, labels_name + ".tmp.npy"), labels)
    os.replace(os.path.join(out, labels_name + ".tmp.npy"), os.path.join(out, labels_name))
    entry["uint8_store"] = {"images": f"{split}-images.npy", "labels": labels_name,
                            "sha256": [d["uint8_sha256"] for d in done], "labels_sha256": sha256(labels.tobytes())}
  return entry


def prepare(config, out, size=None, formats=FORMATS, quality=95, shard_size=1024):
  """Writes (or finishes) the prepared copy of config's dataset in `out`; returns the manifest."""
  import tqdm
  from mnet_jax.models.mobilenet_v1 import check_resolution
  check_resolution(config.resolution)
  size = default_size(config.resolution) if size is None else size
  if size < config.resolution:
    raise ConfigError(f"--size {size} is smaller than resolution={config.resolution}; the copy must store at least "
                      "the largest resolution that will train from it")
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise ConfigError(f"--formats {','.join(formats)!r} is not allowed; choose from {', '.join(FORMATS)}")
  if not 90 <= quality <= 100:
    raise ConfigError(f"--quality {quality} is not allowed: it must be in [90, 100]")
  if shard_size < 1:
    raise ConfigError(f"--shard-size {shard_size} is not allowed: it must be >= 1")
  process.hide_gpus_from_tensorflow()
  hint = ("; training reads Fashion-MNIST from its IDX files (data.fashion_mnist_dir) without a prepared copy"
          if config.data.name == "fashion_mnist" else "")
  builder = tfds_builder(config.data, hint)
  splits = list(dict.fromkeys((config.data.train_split, config.data.eval_split)))
  settings = {"source": config.data.name, "version": str(builder.info.version), "size": size, "quality": quality,
              "formats": [f for f in FORMATS if f in formats], "shard_size": shard_size, "splits": splits}
  plan_path = os.path.join(out, "prepare.json")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f"--out {out!r} is not a directory")
  plan = read_json(plan_path)
  if plan is None and os.path.isdir(out) and os.listdir(out):
    raise ConfigError(f"--out {out!r} is a non-empty directory that holds no prepared copy; use a new directory")
  if plan is not None and plan != settings:
    changed = sorted(k for k in settings if plan.get(k) != settings[k])
    raise ConfigError(f"--out {out!r} holds a copy prepared with other settings ({', '.join(changed)} differ: "
                      f"{', '.join(f'{k}={plan.get(k)!r}' for k in changed)}); use a new directory or those settings")
  os.makedirs(os.path.join(out, ".done"), exist_ok=True)
  write_atomically(plan_path, json.dumps(settings, indent=2, sort_keys=True))
  manifest_path = os.path.join(out, MANIFEST)
  manifest = read_json(manifest_path)
  if manifest is not None:
    return manifest
  label_key = builder.info.supervised_keys[1]
  counts = {split: split_size(builder, split) for split in splits}
  bar = tqdm.tqdm(total=sum(counts.values()), unit="img", dynamic_ncols=True, disable=not sys.stderr.isatty())
  manifest = {**{k: v for k, v in settings.items() if k != "splits"},
              "num_classes": builder.info.features[label_key].num_classes, "splits": {}}
  for split in splits:
    manifest["splits"][split] = prepare_split(builder, split, out, settings, bar)
  bar.close()
  write_atomically(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
  return manifest


@exit_on_config_error
def main(argv=None):
  parser = OneLineArgumentParser(prog="python -m mnet_jax.prepare", description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, help="experiment config file, path.py[:arg] (mnet_jax/configs/*.py)")
  parser.add_argument("--out", required=True, help="directory of the prepared copy (created; resumed when it exists)")
  parser.add_argument("--size", type=int, help="shorter side stored, in px (default: 1.25x config.resolution)")
  parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
  parser.add_argument("--quality", type=int, default=95, help="JPEG quality of prepared_jpeg, 90-100")
  parser.add_argument("--shard-size", "--shard_size", dest="shard_size", type=int, default=1024,
                      help="examples per shard (the unit of resumption)")
  args, rest = parser.parse_known_args(argv)
  process.setup_process()
  config = config_file.load(args.config, config_file.parse_overrides(rest))
  formats = tuple(filter(None, args.formats.split(",")))
  manifest = prepare(config, args.out, args.size, formats, args.quality, args.shard_size)
  counts = ", ".join(f"{split} {entry['count']}" for split, entry in manifest["splits"].items())
  print(f"prepared {manifest['source']} ({counts} images) at shorter side {manifest['size']} as "
        f"{', '.join(manifest['formats'])} in {args.out}")


if __name__ == "__main__":
  main()
